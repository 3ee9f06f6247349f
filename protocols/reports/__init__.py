"""Reading and reporting commands on run files: ``hlopsim inspect``, ``compare``, ``plot`` and ``export``.

- `inspect`: what one run file holds, as text or JSON (`inspect_command`);
- `compare`: ACC, BWT and forgetting of several run files and their spread over seeds
  (`compare_command`);
- `plots`: figures of a run file as PNG (`plot_command` and the ``*_figure`` functions);
- `export`: NWB (pynwb) and Neo (neo) versions of a run file (`export_command`, `to_nwb`,
  `to_neo_block`).

Every module reads through `hlopsim.sim.runfile.RunFile` and never imports Brian2; the
submodules are imported only when a command needs them.
"""
