"""Tests of sim/kernels.py: Numba kernels against their numpy twins, edge
cases, and the scientific properties the HLOP simulator relies on."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.linalg import subspace_angles

from hlopsim.sim import kernels as kn

RTOL = 1e-12
ATOL = 1e-13


def _orthonormal_rows(rng, K, n):
    """(K, n) matrix with orthonormal rows (from a QR decomposition)."""
    if K == 0:
        return np.zeros((0, n))
    q, _ = np.linalg.qr(rng.normal(size=(n, K)))
    return np.ascontiguousarray(q.T)


# ---------------------------------------------------------------------------
# project_out / projected_update
# ---------------------------------------------------------------------------

SHAPES = [  # (m, n, B, K)
    (7, 11, 5, 3),
    (13, 9, 1, 4),  # B = 1
    (6, 10, 8, 0),  # K = 0
    (5, 17, 6, 17),  # K = n: full basis
    (9, 12, 3, 2),
]


@pytest.mark.parametrize("m,n,B,K", SHAPES)
def test_project_out_matches_numpy(m, n, B, K):
    rng = np.random.default_rng(100 + 7 * m + n)
    a = rng.normal(size=(B, n))
    H = rng.normal(size=(K, n))  # formula holds for any H, orthonormal or not
    a0 = a.copy()
    got = kn.project_out(a, H)
    ref = kn.project_out_numpy(a, H)
    np.testing.assert_allclose(got, ref, rtol=RTOL, atol=ATOL)
    assert got.shape == (B, n) and got.dtype == np.float64
    assert np.array_equal(a, a0)  # input untouched
    assert not np.shares_memory(got, a)
    if K == 0:
        assert np.array_equal(got, a)


def test_project_out_is_orthogonal_projection():
    rng = np.random.default_rng(1)
    n, K, B = 30, 6, 10
    H = _orthonormal_rows(rng, K, n)
    a = rng.normal(size=(B, n))
    ap = kn.project_out(a, H)
    assert np.abs(ap @ H.T).max() < 1e-13
    np.testing.assert_allclose(kn.project_out(ap, H), ap, rtol=0, atol=1e-13)  # idempotent
    # components inside span(H) are removed completely
    inside = rng.normal(size=(B, K)) @ H
    assert np.abs(kn.project_out(inside, H)).max() < 1e-13


@pytest.mark.parametrize("m,n,B,K", SHAPES)
@pytest.mark.parametrize("lr", [0.3, -0.05])
def test_projected_update_matches_numpy(m, n, B, K, lr):
    rng = np.random.default_rng(200 + 3 * m + K)
    W = rng.normal(size=(m, n))
    delta = rng.normal(size=(B, m))
    a = rng.random((B, n))
    H = _orthonormal_rows(rng, K, n)
    args0 = [x.copy() for x in (delta, a, H)]
    W_nb, W_np = W.copy(), W.copy()
    assert kn.projected_update(W_nb, delta, a, H, lr) is None
    kn.projected_update_numpy(W_np, delta, a, H, lr)
    np.testing.assert_allclose(W_nb, W_np, rtol=RTOL, atol=ATOL)
    assert not np.array_equal(W_nb, W)  # something happened
    for x, x0 in zip((delta, a, H), args0):
        assert np.array_equal(x, x0)


def test_projected_update_without_basis_is_plain_outer_product_sum():
    rng = np.random.default_rng(3)
    m, n, B, lr = 8, 12, 6, 0.1
    W = rng.normal(size=(m, n))
    delta = rng.normal(size=(B, m))
    a = rng.random((B, n))
    expect = W.copy()
    for b in range(B):
        expect -= lr * np.outer(delta[b], a[b])
    kn.projected_update(W, delta, a, np.zeros((0, n)), lr)
    np.testing.assert_allclose(W, expect, rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("fn", [kn.projected_update, kn.projected_update_numpy])
@pytest.mark.parametrize("K", [0, 3])
def test_projected_update_lr_zero_is_bit_identical(fn, K):
    rng = np.random.default_rng(4)
    W = rng.normal(size=(6, 9))
    W0 = W.copy()
    delta = rng.normal(size=(4, 6))
    delta[0, 0] = np.inf  # would poison W if lr = 0 were applied arithmetically
    fn(W, delta, rng.random((4, 9)), _orthonormal_rows(rng, K, 9), 0.0)
    assert np.array_equal(W, W0)


def test_projected_update_is_deterministic():
    rng = np.random.default_rng(5)
    W = rng.normal(size=(37, 53))
    delta, a = rng.normal(size=(16, 37)), rng.random((16, 53))
    H = _orthonormal_rows(rng, 9, 53)
    W1, W2 = W.copy(), W.copy()
    kn.projected_update(W1, delta, a, H, 0.2)
    kn.projected_update(W2, delta, a, H, 0.2)
    assert np.array_equal(W1, W2)


def test_projected_update_preserves_old_subspace():
    """Science: dW H^T = 0 and W's response to inputs in span(H) is unchanged."""
    rng = np.random.default_rng(6)
    m, n, B, K = 20, 40, 16, 8
    H = _orthonormal_rows(rng, K, n)
    W = 0.3 * rng.normal(size=(m, n))
    delta = rng.normal(size=(B, m))
    a = rng.random((B, n))  # rates: not orthogonal to span(H)
    a_old = rng.normal(size=(25, K)) @ H  # old-task inputs, inside span(H)
    resp_before = a_old @ W.T

    W_new = W.copy()
    kn.projected_update(W_new, delta, a, H, 0.5)
    dW = W_new - W
    assert np.linalg.norm(dW) > 1.0  # a real, large step
    assert np.linalg.norm(dW @ H.T) < 1e-12 * np.linalg.norm(dW)
    np.testing.assert_allclose(a_old @ W_new.T, resp_before, rtol=1e-12, atol=1e-12)

    # Control: the unprojected update (K = 0) does disturb the old responses.
    W_plain = W.copy()
    kn.projected_update(W_plain, delta, a, np.zeros((0, n)), 0.5)
    assert np.linalg.norm(a_old @ W_plain.T - resp_before) > 0.1 * np.linalg.norm(resp_before)


@pytest.mark.parametrize("fn", [kn.projected_update, kn.projected_update_numpy])
def test_projected_update_rejects_bad_shapes(fn):
    W = np.zeros((4, 5))
    with pytest.raises(ValueError):
        fn(W, np.zeros((3, 4)), np.zeros((2, 5)), np.zeros((0, 5)), 0.1)  # B mismatch
    with pytest.raises(ValueError):
        fn(W, np.zeros((3, 4)), np.zeros((3, 5)), np.zeros((2, 6)), 0.1)  # H width
    with pytest.raises(ValueError):
        fn(W, np.zeros((3, 5)), np.zeros((3, 5)), np.zeros((0, 5)), 0.1)  # delta width


# ---------------------------------------------------------------------------
# output_credit
# ---------------------------------------------------------------------------


def _ce_loss(rates, labels, scale, valid):
    """Independent reference: mean softmax cross-entropy over valid rows."""
    z = scale * rates[valid]
    lab = labels[valid]
    zmax = z.max(axis=1, keepdims=True)
    lse = np.log(np.exp(z - zmax).sum(axis=1)) + zmax[:, 0]
    return float(np.mean(lse - z[np.arange(len(lab)), lab]))


@pytest.mark.parametrize(
    "B,C,scale,valid_pattern",
    [(8, 5, 4.0, "mixed"), (1, 3, 10.0, "all"), (6, 10, 1.0, "all"), (5, 4, 2.5, "one")],
)
def test_output_credit_matches_numpy(B, C, scale, valid_pattern):
    rng = np.random.default_rng(300 + B * C)
    rates = rng.random((B, C))
    labels = rng.integers(0, C, size=B).astype(np.int64)
    if valid_pattern == "all":
        valid = np.ones(B, dtype=bool)
    elif valid_pattern == "one":
        valid = np.zeros(B, dtype=bool)
        valid[2] = True
    else:
        valid = rng.random(B) < 0.6
        valid[0] = True
        valid[-1] = False
    labels[~valid] = -1  # padding labels must be ignored
    d_nb, l_nb = kn.output_credit(rates, labels, scale, valid)
    d_np, l_np = kn.output_credit_numpy(rates, labels, scale, valid)
    np.testing.assert_allclose(d_nb, d_np, rtol=RTOL, atol=ATOL)
    assert l_nb == pytest.approx(l_np, rel=1e-12)
    assert isinstance(l_nb, float)
    assert l_nb == pytest.approx(_ce_loss(rates, labels, scale, valid), rel=1e-12)
    assert np.all(d_nb[~valid] == 0.0)
    # Softmax-minus-onehot rows sum to zero.
    np.testing.assert_allclose(d_nb.sum(axis=1), 0.0, atol=1e-14)


@pytest.mark.parametrize("fn", [kn.output_credit, kn.output_credit_numpy])
def test_output_credit_all_invalid(fn):
    rates = np.random.default_rng(7).random((4, 6))
    delta, loss = fn(rates, np.full(4, -1, dtype=np.int64), 3.0, np.zeros(4, dtype=bool))
    assert delta.shape == (4, 6)
    assert np.array_equal(delta, np.zeros((4, 6)))
    assert loss == 0.0


def test_output_credit_is_gradient_of_loss():
    """delta == d loss / d rates (central finite differences); padding rows have no effect."""
    rng = np.random.default_rng(8)
    B, C, scale = 6, 4, 3.0
    rates = rng.random((B, C))
    labels = rng.integers(0, C, size=B).astype(np.int64)
    valid = np.array([True, False, True, True, False, True])
    delta, loss = kn.output_credit(rates, labels, scale, valid)
    h = 1e-6
    fd = np.zeros((B, C))
    for b in range(B):
        for c in range(C):
            rp, rm = rates.copy(), rates.copy()
            rp[b, c] += h
            rm[b, c] -= h
            fd[b, c] = (
                kn.output_credit(rp, labels, scale, valid)[1]
                - kn.output_credit(rm, labels, scale, valid)[1]
            ) / (2 * h)
    np.testing.assert_allclose(delta, fd, rtol=1e-6, atol=1e-9)
    assert np.all(fd[~valid] == 0.0)


def test_output_credit_numerically_stable():
    rates = np.array([[1000.0, 999.0, -1000.0], [0.0, 800.0, 800.0]])
    labels = np.array([0, 2], dtype=np.int64)
    valid = np.ones(2, dtype=bool)
    delta, loss = kn.output_credit(rates, labels, 5.0, valid)
    assert np.all(np.isfinite(delta)) and np.isfinite(loss)
    # row 0: CE = log(1 + e^-5); row 1: CE = log 2 (up to e^-4000)
    assert loss == pytest.approx(0.5 * (np.log1p(np.exp(-5.0)) + np.log(2.0)), rel=1e-12)


@pytest.mark.parametrize("fn", [kn.output_credit, kn.output_credit_numpy])
def test_output_credit_rejects_bad_label(fn):
    rates = np.zeros((2, 3))
    with pytest.raises(ValueError):
        fn(rates, np.array([0, 3], dtype=np.int64), 1.0, np.ones(2, dtype=bool))
    # out-of-range label on a padding row is fine
    fn(rates, np.array([0, 3], dtype=np.int64), 1.0, np.array([True, False]))


# ---------------------------------------------------------------------------
# hidden_credit
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("m,n,B", [(5, 8, 4), (3, 6, 1), (10, 4, 7)])
def test_hidden_credit_matches_numpy_and_formula(m, n, B):
    rng = np.random.default_rng(400 + m * n + B)
    thr = 0.7
    W_next = rng.normal(size=(m, n))
    delta_next = rng.normal(size=(B, m))
    u = rng.uniform(-0.5, 1.2, size=(B, n))
    u[0, 0] = 0.0  # exactly at the lower kink
    u[-1, -1] = thr  # exactly at the threshold
    got = kn.hidden_credit(W_next, delta_next, u, thr)
    ref = kn.hidden_credit_numpy(W_next, delta_next, u, thr)
    np.testing.assert_allclose(got, ref, rtol=RTOL, atol=ATOL)
    # explicit element-wise formula
    expect = np.zeros((B, n))
    for b in range(B):
        for j in range(n):
            if 0.0 < u[b, j] < thr:
                expect[b, j] = sum(delta_next[b, i] * W_next[i, j] for i in range(m)) / thr
    np.testing.assert_allclose(got, expect, rtol=1e-12, atol=1e-13)
    assert got[0, 0] == 0.0 and got[-1, -1] == 0.0


def test_hidden_credit_matches_finite_differences():
    """delta = d/du of L = sum(delta_next * (r(u) @ W_next.T)), r(u) = clip(u/thr, 0, 1)."""
    rng = np.random.default_rng(9)
    m, n, B, thr = 4, 6, 3, 0.5
    W_next = rng.normal(size=(m, n))
    delta_next = rng.normal(size=(B, m))
    u = rng.uniform(-0.4, 0.9, size=(B, n))
    u[np.abs(u) < 0.02] = 0.1  # keep away from the kinks
    u[np.abs(u - thr) < 0.02] = 0.3

    def L(uu):
        r = np.clip(uu / thr, 0.0, 1.0)
        return float(np.sum(delta_next * (r @ W_next.T)))

    h = 1e-6
    fd = np.zeros((B, n))
    for b in range(B):
        for j in range(n):
            up, um = u.copy(), u.copy()
            up[b, j] += h
            um[b, j] -= h
            fd[b, j] = (L(up) - L(um)) / (2 * h)
    got = kn.hidden_credit(W_next, delta_next, u, thr)
    np.testing.assert_allclose(got, fd, rtol=1e-6, atol=1e-8)
    assert np.count_nonzero(got) > 0 and np.count_nonzero(got == 0.0) > 0  # both regimes hit


@pytest.mark.parametrize("fn", [kn.hidden_credit, kn.hidden_credit_numpy])
def test_hidden_credit_rejects_bad_input(fn):
    with pytest.raises(ValueError):
        fn(np.zeros((3, 4)), np.zeros((2, 3)), np.zeros((2, 4)), 0.0)
    with pytest.raises(ValueError):
        fn(np.zeros((3, 4)), np.zeros((2, 3)), np.zeros((2, 5)), 1.0)


# ---------------------------------------------------------------------------
# hidden_credit_slope
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("m,n,B", [(5, 8, 4), (3, 6, 1), (10, 4, 7)])
def test_hidden_credit_slope_matches_numpy_and_formula(m, n, B):
    rng = np.random.default_rng(450 + m * n + B)
    drive = np.linspace(-1.0, 4.0, 26)
    slope = rng.uniform(0.0, 1.0, size=26)
    W_next = rng.normal(size=(m, n))
    delta_next = rng.normal(size=(B, m))
    u = rng.uniform(-1.5, 4.5, size=(B, n))  # some outside the grid
    u[0, 0] = drive[0]                         # the ends and a grid point exactly
    u[-1, -1] = drive[-1]
    u[0, 1] = drive[-1] + 0.25                 # one input beyond the grid for sure
    if n > 2:
        u[0, 2] = drive[7]
    got = kn.hidden_credit_slope(W_next, delta_next, u, drive, slope)
    ref = kn.hidden_credit_slope_numpy(W_next, delta_next, u, drive, slope)
    np.testing.assert_allclose(got, ref, rtol=RTOL, atol=ATOL)
    expect = np.zeros((B, n))
    for b in range(B):
        for j in range(n):
            x = u[b, j]
            if drive[0] <= x <= drive[-1]:
                k = min(int(np.floor((x - drive[0]) / (drive[1] - drive[0]))), 24)
                g = slope[k] + (slope[k + 1] - slope[k]) * (x - drive[k]) / (drive[k + 1] - drive[k])
                expect[b, j] = sum(delta_next[b, i] * W_next[i, j] for i in range(m)) * g
    np.testing.assert_allclose(got, expect, rtol=1e-10, atol=1e-12)
    outside = (u < drive[0]) | (u > drive[-1])
    assert np.all(got[outside] == 0.0) and outside.any()
    assert got[0, 0] == pytest.approx((delta_next[0] @ W_next[:, 0]) * slope[0], rel=1e-12)
    assert got[-1, -1] == pytest.approx((delta_next[-1] @ W_next[:, -1]) * slope[-1], rel=1e-12)


def test_hidden_credit_slope_of_the_indicator_agrees_with_hidden_credit():
    """A slope table that is 1 on (0, 1) and 0 elsewhere (edges 1e-9 wide) reproduces the IF kernel."""
    rng = np.random.default_rng(5)
    drive = np.array([-2.0, -1e-9, 0.0, 1e-9, 1.0 - 1e-9, 1.0, 1.0 + 1e-9, 3.0])
    slope = np.array([0.0, 0.0, 0.0, 1.0, 1.0, 0.0, 0.0, 0.0])
    W_next, delta_next = rng.normal(size=(4, 9)), rng.normal(size=(6, 4))
    u = rng.uniform(-0.5, 1.5, size=(6, 9))
    np.testing.assert_allclose(kn.hidden_credit_slope(W_next, delta_next, u, drive, slope),
                               kn.hidden_credit(W_next, delta_next, u, 1.0), rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("fn", [kn.hidden_credit_slope, kn.hidden_credit_slope_numpy])
def test_hidden_credit_slope_rejects_bad_input(fn):
    good = (np.zeros((3, 4)), np.zeros((2, 3)), np.zeros((2, 4)))
    with pytest.raises(ValueError, match="strictly increasing"):
        fn(*good, np.array([0.0, 1.0, 1.0]), np.zeros(3))
    with pytest.raises(ValueError, match="same length"):
        fn(*good, np.array([0.0, 1.0, 2.0]), np.zeros(2))
    with pytest.raises(ValueError, match="must match"):
        fn(np.zeros((3, 4)), np.zeros((2, 3)), np.zeros((2, 5)), np.array([0.0, 1.0]), np.zeros(2))


# ---------------------------------------------------------------------------
# oja_discrete
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "K,n,R,rows_start,n_iter,clip",
    [
        (5, 12, 9, 0, 5, 10.0),
        (5, 12, 9, 2, 3, 10.0),
        (5, 12, 9, 5, 5, 10.0),  # rows_start = K: nothing plastic
        (6, 7, 1, 1, 4, 0.05),  # R = 1, clipping active
        (0, 8, 4, 0, 5, 10.0),  # K = 0
        (4, 10, 6, 0, 0, 10.0),  # n_iter = 0
    ],
)
def test_oja_discrete_matches_numpy(K, n, R, rows_start, n_iter, clip):
    rng = np.random.default_rng(500 + K * n + rows_start)
    H = 0.3 * rng.normal(size=(K, n))
    X = rng.normal(size=(R, n))
    V = 0.1 * rng.normal(size=(K, n))
    H_nb, V_nb, H_np, V_np = H.copy(), V.copy(), H.copy(), V.copy()
    X0 = X.copy()
    assert kn.oja_discrete(H_nb, X, 0.05, V_nb, rows_start, n_iter, clip, 0.8) is None
    kn.oja_discrete_numpy(H_np, X, 0.05, V_np, rows_start, n_iter, clip, 0.8)
    np.testing.assert_allclose(H_nb, H_np, rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(V_nb, V_np, rtol=RTOL, atol=ATOL)
    assert np.array_equal(X, X0)
    # frozen rows and their velocity bit-identical
    assert np.array_equal(H_nb[:rows_start], H[:rows_start])
    assert np.array_equal(V_nb[:rows_start], V[:rows_start])
    if rows_start < K and n_iter > 0:
        assert not np.array_equal(H_nb[rows_start:], H[rows_start:])
    else:
        assert np.array_equal(H_nb, H) and np.array_equal(V_nb, V)


def test_oja_discrete_default_arguments_and_determinism():
    rng = np.random.default_rng(10)
    H = 0.2 * rng.normal(size=(3, 8))
    X = rng.normal(size=(5, 8))
    V = np.zeros((3, 8))
    H1, V1, H2, V2, H3, V3 = H.copy(), V.copy(), H.copy(), V.copy(), H.copy(), V.copy()
    kn.oja_discrete(H1, X, 0.02, V1, 1)
    kn.oja_discrete(H2, X, 0.02, V2, 1, 5, 10.0, 0.9)
    kn.oja_discrete_numpy(H3, X, 0.02, V3, 1)
    assert np.array_equal(H1, H2) and np.array_equal(V1, V2)
    np.testing.assert_allclose(H1, H3, rtol=RTOL, atol=ATOL)


def test_oja_discrete_single_step_formula_and_clip():
    """One iteration, momentum 0: H[p] += lr * clip(Y_p^T (X - Y H) / R)."""
    rng = np.random.default_rng(11)
    K, n, R, lr, clip = 4, 9, 6, 0.1, 0.5
    H = rng.normal(size=(K, n))
    X = 3.0 * rng.normal(size=(R, n))
    V = rng.normal(size=(K, n))
    Y = X @ H.T
    D = Y.T @ (X - Y @ H) / R
    assert np.abs(D).max() > clip  # clipping is exercised
    expect = H.copy()
    expect[1:] += lr * np.clip(D[1:], -clip, clip)
    H_new, V_new = H.copy(), V.copy()
    kn.oja_discrete(H_new, X, lr, V_new, 1, 1, clip, 0.0)
    np.testing.assert_allclose(H_new, expect, rtol=1e-12, atol=1e-13)
    assert np.abs(H_new[1:] - H[1:]).max() <= lr * clip * (1 + 1e-12)
    assert np.array_equal(H_new[0], H[0]) and np.array_equal(V_new[0], V[0])


def _subspace_stream(seed, n=20, k=3, R=32):
    rng = np.random.default_rng(seed)
    U, _ = np.linalg.qr(rng.normal(size=(n, k)))  # (n, k) orthonormal
    scales = np.array([3.0, 2.5, 2.0])

    def batch():
        Z = rng.normal(size=(R, k)) * scales
        return Z @ U.T + 0.01 * rng.normal(size=(R, n))

    return rng, U, batch


def test_oja_discrete_learns_principal_subspace():
    rng, U, batch = _subspace_stream(12)
    n, k = U.shape
    H = 0.1 * rng.normal(size=(k, n))
    V = np.zeros((k, n))
    assert np.degrees(subspace_angles(H.T, U)).max() > 30.0  # starts far away
    for _ in range(200):
        kn.oja_discrete(H, batch(), 0.01, V, 0)
    assert np.degrees(subspace_angles(H.T, U)).max() < 5.0
    assert np.linalg.norm(H @ H.T - np.eye(k)) < 0.1


def test_oja_discrete_frozen_rows_take_part_in_feedback():
    """Old row frozen (bit-identical), new rows learn the rest of the subspace,
    orthogonal to the frozen one."""
    rng, U, batch = _subspace_stream(13)
    n, k = U.shape
    H = 0.1 * rng.normal(size=(k, n))
    H[0] = U[:, 0]
    V = 0.1 * rng.normal(size=(k, n))  # non-zero frozen velocity must survive too
    H0, V0 = H.copy(), V.copy()
    for _ in range(200):
        kn.oja_discrete(H, batch(), 0.01, V, 1)
    assert np.array_equal(H[0], H0[0]) and np.array_equal(V[0], V0[0])
    assert np.degrees(subspace_angles(H.T, U)).max() < 5.0
    assert np.linalg.norm(H @ H.T - np.eye(k)) < 0.1
    assert np.abs(H[1:] @ H[0]).max() < 0.05


@pytest.mark.parametrize("fn", [kn.oja_discrete, kn.oja_discrete_numpy])
def test_oja_discrete_rejects_bad_input(fn):
    H, V = np.zeros((3, 4)), np.zeros((3, 4))
    with pytest.raises(ValueError):
        fn(H, np.zeros((2, 4)), 0.1, V, 4)  # rows_start > K
    with pytest.raises(ValueError):
        fn(H, np.zeros((2, 5)), 0.1, V, 0)  # X width
    with pytest.raises(ValueError):
        fn(H, np.zeros((2, 4)), 0.1, np.zeros((2, 4)), 0)  # velocity shape


# ---------------------------------------------------------------------------
# reduce_shared_weights
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "C,K,n,pattern", [(4, 6, 5, "mixed"), (1, 3, 7, "mixed"), (3, 4, 4, "none"), (5, 2, 9, "all")]
)
def test_reduce_shared_weights(C, K, n, pattern):
    rng = np.random.default_rng(600 + C * K * n)
    shared = rng.normal(size=(K, n))
    copies = shared[None] + 0.01 * rng.normal(size=(C, K, n))  # local drift
    if pattern == "all":
        plastic = np.ones(K, dtype=bool)
    elif pattern == "none":
        plastic = np.zeros(K, dtype=bool)
    else:
        plastic = np.zeros(K, dtype=bool)
        plastic[::2] = True
    shared0, copies0 = shared.copy(), copies.copy()

    s_nb, c_nb = shared.copy(), copies.copy()
    s_np, c_np = shared.copy(), copies.copy()
    assert kn.reduce_shared_weights(c_nb, s_nb, plastic) is None
    kn.reduce_shared_weights_numpy(c_np, s_np, plastic)
    np.testing.assert_allclose(s_nb, s_np, rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(c_nb, c_np, rtol=RTOL, atol=ATOL)

    # plastic rows: shared + summed drift (explicit loop reference)
    for k in range(K):
        if plastic[k]:
            drift = np.zeros(n)
            for c in range(C):
                drift += copies0[c, k] - shared0[k]
            np.testing.assert_allclose(s_nb[k], shared0[k] + drift, rtol=1e-13, atol=1e-15)
            assert not np.array_equal(s_nb[k], shared0[k])
    # frozen rows bit-identical
    assert np.array_equal(s_nb[~plastic], shared0[~plastic])
    # every copy reset to the new shared value
    for c in range(C):
        assert np.array_equal(c_nb[c], s_nb)


@pytest.mark.parametrize("fn", [kn.reduce_shared_weights, kn.reduce_shared_weights_numpy])
def test_reduce_shared_weights_rejects_bad_shapes(fn):
    with pytest.raises(ValueError):
        fn(np.zeros((2, 3, 4)), np.zeros((3, 5)), np.ones(3, dtype=bool))
    with pytest.raises(ValueError):
        fn(np.zeros((2, 3, 4)), np.zeros((3, 4)), np.ones(2, dtype=bool))


# ---------------------------------------------------------------------------
# segment_spikes
# ---------------------------------------------------------------------------
def _monitor_records(rng, n_batches, batch, n_per_copy, n_steps, rate, dt, start_step):
    """Random spikes in monitor order: (time, flat index) non-decreasing."""
    steps, flat = np.nonzero(rng.random((n_batches * n_steps, batch * n_per_copy)) < rate)
    return (steps + start_step) * dt, flat.astype(np.int32)


@pytest.mark.parametrize("n_samples_cut", [0, 5])
def test_segment_spikes_matches_twin_and_definition(n_samples_cut):
    rng = np.random.default_rng(3)
    batch, n_per_copy, n_steps, n_batches, dt, start = 4, 7, 6, 3, 1e-3, 250
    t, i = _monitor_records(rng, n_batches, batch, n_per_copy, n_steps, 0.2, dt, start)
    n_samples = n_batches * batch - n_samples_cut % batch       # a partial last batch drops copies
    got = kn.segment_spikes(t, i, dt, start, n_steps, batch, n_per_copy, n_samples)
    twin = kn.segment_spikes_numpy(t, i, dt, start, n_steps, batch, n_per_copy, n_samples)
    for a, b in zip(got, twin):
        np.testing.assert_array_equal(a, b)
    sample, step, neuron = got
    # sorted by (sample, step, neuron), every spike of a kept sample present exactly once
    key = (sample * n_steps + step) * n_per_copy + neuron
    assert np.all(np.diff(key) > 0)
    s = np.rint(t / dt).astype(int) - start
    expected_sample = (s // n_steps) * batch + i // n_per_copy
    assert len(sample) == np.count_nonzero(expected_sample < n_samples)
    flat_back = (sample % batch) * n_per_copy + neuron
    time_back = ((sample // batch) * n_steps + step + start) * dt
    pairs = set(zip(np.round(time_back / dt).astype(int), flat_back))
    kept = expected_sample < n_samples
    assert pairs == set(zip(np.round(t[kept] / dt).astype(int), i[kept]))


def test_segment_spikes_empty_and_bad_input():
    out = kn.segment_spikes(np.zeros(0), np.zeros(0, dtype=np.int32), 1e-3, 0, 5, 2, 3, 4)
    assert all(len(a) == 0 for a in out)
    for fn in (kn.segment_spikes, kn.segment_spikes_numpy):
        with pytest.raises(ValueError):
            fn(np.zeros(3), np.zeros(2, dtype=np.int32), 1e-3, 0, 5, 2, 3, 4)
        with pytest.raises(ValueError):
            fn(np.zeros(3), np.zeros(3, dtype=np.int32), 0.0, 0, 5, 2, 3, 4)


def test_kernel_pairs_registry():
    for name, (nb_fn, np_fn) in kn.KERNEL_PAIRS.items():
        assert np_fn.__name__ == f"{name}_numpy"
        assert hasattr(nb_fn, "py_func")  # a Numba dispatcher
        assert nb_fn.targetoptions.get("fastmath", False) is False
        assert nb_fn.py_func.__doc__ and np_fn.__doc__
