"""Variable projection for the gamma = 1 forms (Chinchilla, tied exponents): starts for the fitter
that cover every exponent pair (docs/science.md §4).

For fixed exponents (alpha, beta), L = E + A x + B y with x = N^-alpha, y = D^-beta is linear in
(E, A, B) >= 0. Weighting each run by 1/L makes the squared residual the squared relative error,
which is the log-residual to first order: so a small non-negative least-squares problem gives
(E, A, B) per exponent pair, exactly and without iterations. It is solved for every pair of a fine
exponent grid at once (a 3-variable NNLS by enumerating its active sets), every pair is scored by
the fitter's real objective, and the best pairs become the starts of the log-space L-BFGS polish.
The global search over exponents is exhaustive, so no grid of (E, A, B) starts is needed.
"""

from __future__ import annotations

import itertools

import numpy as np

from distillscale.laws.ties import TIE_RTOL, rounded

# Exponent grid of the search: the Chinchilla grid's [0, 2], 50 times finer.
EXPONENTS = np.round(np.arange(0.0, 2.0 + 1e-9, 0.02), 10)
# log of a coefficient that the NNLS sets to zero: the lower bound of the fitter's box.
LOG_ZERO = {"log_E": -5.0, "log_A": -20.0, "log_B": -20.0}
REWEIGHTED_PAIRS = 200
REWEIGHTING_STEPS = 3
# Alpha values per band whose best pair always gets a start (5: bands of 0.1).
ALPHA_BAND = 5


def varpro_starts(log_n: np.ndarray, log_d: np.ndarray, loss: np.ndarray, *, tied: bool = False,
                  irreducible_loss: float | None = None, huber_delta: float = 1e-3,
                  n_starts: int = 20, exponents: np.ndarray = EXPONENTS) -> np.ndarray:
    """The `n_starts` best exponent pairs with their projected (E, A, B), best first, then the best
    pair of every band of alpha not among them, as Chinchilla-form parameter rows
    [log_E, log_A, log_B, alpha, beta].

    tied: alpha = beta only. irreducible_loss: E held at this value (the NNLS solves A, B)."""
    x = np.exp(-exponents[:, None] * log_n[None])           # (n_alpha, R)
    y = np.exp(-exponents[:, None] * log_d[None])           # (n_beta, R)
    pairs = ([(i, i) for i in range(len(exponents))] if tied
             else list(itertools.product(range(len(exponents)), repeat=2)))
    ia, ib = np.array(pairs).T
    weight = np.broadcast_to(1.0 / loss, (len(pairs), len(loss)))
    coefficients, objective = _project(x[ia], y[ib], loss, weight, irreducible_loss, huber_delta)
    # The objective is a Huber loss, mostly in its linear part: a few iteratively reweighted
    # least-squares steps (weight delta / |residual| outside delta) on the most promising pairs
    # move their (E, A, B) to the Huber optimum, so the ranking of the pairs is the fitter's own.
    # Few sizes leave long, nearly flat valleys (alpha against A and E): the best pair of every
    # band of alpha joins the most promising, so every part of a valley gets a start.
    # Ranked on `rounded` objectives: pairs equal but for rounding keep their grid order on every CPU
    # and in every order of the runs (a near-tie at the cut once changed the starts, and the law).
    top = np.union1d(np.argsort(rounded(objective), kind="stable")[:REWEIGHTED_PAIRS], _best_per_band(ia, objective))
    for _ in range(REWEIGHTING_STEPS):
        residual = _log_residual(coefficients[top], x[ia[top]], y[ib[top]], loss)
        reweight = np.sqrt(np.minimum(1.0, huber_delta / np.maximum(np.abs(residual), 1e-300)))
        coefficients[top], objective[top] = _project(x[ia[top]], y[ib[top]], loss,
                                                     weight[top] * reweight, irreducible_loss, huber_delta)
    best = np.argsort(rounded(objective), kind="stable")[:n_starts]
    best = np.concatenate([best, np.setdiff1d(_best_per_band(ia, objective), best)])

    with np.errstate(divide="ignore"):
        logs = np.log(coefficients[best])
    for column, name in enumerate(("log_E", "log_A", "log_B")):
        logs[:, column] = np.where(np.isfinite(logs[:, column]), logs[:, column], LOG_ZERO[name])
    return np.column_stack([logs, exponents[ia[best]], exponents[ib[best]]])


def _best_per_band(alpha_index: np.ndarray, objective: np.ndarray) -> np.ndarray:
    """Index of the best pair in each band of ALPHA_BAND consecutive alpha values."""
    band = alpha_index // ALPHA_BAND
    order = np.lexsort((rounded(objective), band))
    first = np.r_[True, band[order][1:] != band[order][:-1]]
    return order[first]


def _log_residual(coefficients: np.ndarray, x: np.ndarray, y: np.ndarray, loss: np.ndarray) -> np.ndarray:
    predicted = coefficients[:, :1] + coefficients[:, 1:2] * x + coefficients[:, 2:3] * y
    return np.log(np.maximum(predicted, 1e-300)) - np.log(loss)[None]


def _project(x: np.ndarray, y: np.ndarray, loss: np.ndarray, weight: np.ndarray,
             irreducible_loss: float | None, huber_delta: float) -> tuple[np.ndarray, np.ndarray]:
    """(E, A, B) >= 0 per row of x (pairs, R), y by weighted NNLS of L = E + A x + B y, and the
    summed Huber loss of their log-residuals."""
    # Weighted features (pairs, R, 3): [1, x, y] * w; target L * w (L - E with E fixed).
    features = np.stack([weight, x * weight, y * weight], axis=2)
    if irreducible_loss is None:
        coefficients = _nnls_by_active_sets(features, loss * weight)
    else:
        fitted = _nnls_by_active_sets(features[:, :, 1:], (loss - irreducible_loss) * weight)
        coefficients = np.concatenate([np.full((len(x), 1), irreducible_loss), fitted], axis=1)
    residual = _log_residual(coefficients, x, y, loss)
    slope = np.clip(residual, -huber_delta, huber_delta)
    return coefficients, (slope * (residual - 0.5 * slope)).sum(axis=1)


def _nnls_by_active_sets(features: np.ndarray, target: np.ndarray) -> np.ndarray:
    """min ||F c - t||^2 subject to c >= 0, for a batch of small problems F (B, R, K), t (B, R):
    the least-squares solution on every subset of the columns, keeping the best feasible one
    (the NNLS optimum is the unconstrained optimum of its own support)."""
    batch, _, k = features.shape
    gram = np.einsum("brk,brl->bkl", features, features)
    rhs = np.einsum("brk,br->bk", features, target)
    base = np.einsum("br,br->b", target, target)
    best = np.zeros((batch, k))
    best_sse = np.full(batch, base)                          # the all-zero solution
    for size in range(1, k + 1):
        for subset in itertools.combinations(range(k), size):
            s = list(subset)
            g = gram[:, s][:, :, s]
            # A tiny ridge keeps nearly collinear columns (e.g. both exponents 0) solvable.
            ridge = 1e-12 * np.trace(g, axis1=1, axis2=2)[:, None, None] * np.eye(size)
            c = np.linalg.solve(g + ridge, rhs[:, s][:, :, None])[:, :, 0]
            sse = base - np.einsum("bk,bk->b", c, rhs[:, s])
            # A larger support must fit better by more than rounding: where a column adds nothing
            # (A N^-alpha negligible), whether it got a tiny coefficient or none depended on the CPU.
            better = np.all(c >= 0, axis=1) & (sse < best_sse - TIE_RTOL * base)
            best_sse = np.where(better, sse, best_sse)
            update = np.zeros((batch, k))
            update[:, s] = c
            best = np.where(better[:, None], update, best)
    return best
