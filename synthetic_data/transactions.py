"""Deterministic, vectorized synthetic card-transaction data for the Portside demo.

Writes four Parquet files into an output directory:

* ``transactions.parquet``: one row per card transaction, labelled ``is_fraud``;
* ``user_profiles.parquet``: slowly changing user attributes, one row per profile version;
* ``user_daily_aggregates.parquet``: what a daily batch job produces (rolling 1/7/30-day counts
  and amounts), with realistic landing delays, late rows and backfilled corrections;
* ``labels.parquet``: the delayed labels as a labels feed holds them at the window's end (one
  row per transaction whose label has arrived: ``transaction_id``, ``is_fraud``,
  ``labelled_at``): a fraud is known when its chargeback comes (1-40 days later), a legitimate
  transaction once its dispute window closes (LEGIT_CONFIRMED_DAYS), so the last weeks are only
  partly labelled and their labelled fraud rate runs high, as in production.

Everything is drawn from one ``np.random.default_rng(seed)`` in a fixed order (the drift
scenario and the label delays from streams of their own, so adding them changes no other
value), so the same config gives identical tables. Timestamps are microsecond UTC (DuckDB and
Feast reject nanoseconds).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from tqdm.auto import tqdm

US_PER_SECOND = 1_000_000
US_PER_HOUR = 3_600 * US_PER_SECOND
US_PER_DAY = 24 * US_PER_HOUR
TIMESTAMP = pa.timestamp("us", tz="UTC")
EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)

# name, share of transactions, amount multiplier vs the user's typical amount, fraud logit offset
CATEGORIES: tuple[tuple[str, float, float, float], ...] = (
    ("grocery", 0.22, 1.0, -0.8),
    ("restaurants", 0.16, 0.7, -0.5),
    ("fuel", 0.10, 1.1, -0.3),
    ("online_retail", 0.14, 1.4, 0.5),
    ("entertainment", 0.07, 0.9, 0.0),
    ("health", 0.06, 1.3, -0.6),
    ("utilities", 0.08, 2.2, -1.0),
    ("travel", 0.05, 5.0, 0.7),
    ("electronics", 0.07, 3.5, 1.0),
    ("gift_cards", 0.05, 1.8, 1.6),
)
COUNTRIES: tuple[tuple[str, float], ...] = (
    ("US", 0.35),
    ("GB", 0.15),
    ("DE", 0.12),
    ("FR", 0.10),
    ("CA", 0.08),
    ("NL", 0.07),
    ("ES", 0.07),
    ("BR", 0.06),
)
# Relative transaction volume per hour of day (UTC) and per weekday (Monday first).
HOURLY_WEIGHTS = np.array(
    [2, 1, 1, 1, 1, 2, 4, 6, 7, 7, 8, 9, 11, 10, 8, 8, 9, 10, 12, 12, 10, 8, 5, 3], dtype=float
)
WEEKDAY_WEIGHTS = np.array([0.95, 0.95, 1.0, 1.0, 1.1, 1.2, 1.0])

IN_WINDOW_SIGNUP_SHARE = 0.05
CHARGEBACK_DAYS = (1, 40)  # a fraud's label arrives this many days after the transaction
LEGIT_CONFIRMED_DAYS = 45  # a transaction nobody disputed is known legitimate after this
NIGHT_FRAUD_EFFECT = 0.5  # fraud logit offset of transactions before 05:00 UTC


@dataclass(frozen=True)
class DriftScenario:
    """A drifted period at the end of the window, for the monitoring demo: from `start` on,
    amounts grow, a merchant category the model never saw takes a share of the transactions,
    and the fraud pattern changes (the new category is risky, night-time no longer is).

    Drawn from a random stream of its own, so the rows before `start` are exactly those of the
    same config without drift.
    """

    start: datetime
    amount_scale: float = 1.6
    new_category: str = "crypto_exchange"
    new_category_share: float = 0.08
    new_category_amount_factor: float = 2.5
    new_category_risk: float = 2.0  # fraud logit offset, as CATEGORIES' last field
    night_fraud_effect: float = 0.0  # replaces NIGHT_FRAUD_EFFECT

    def validate(self, window_start: datetime, window_end: datetime) -> None:
        if self.start.tzinfo is None:
            raise ValueError(f"drift start must be timezone-aware, got {self.start!r}")
        if not window_start < self.start < window_end:
            raise ValueError(
                f"drift start {self.start.isoformat()} is outside the data's window "
                f"({window_start.isoformat()} to {window_end.isoformat()})"
            )
        if self.amount_scale <= 0:
            raise ValueError(f"drift amount_scale must be > 0, got {self.amount_scale}")
        if not 0.0 <= self.new_category_share < 1.0:
            raise ValueError(
                f"drift new_category_share must be in [0, 1), got {self.new_category_share}"
            )
        if self.new_category in {c[0] for c in CATEGORIES}:
            raise ValueError(f"drift new_category {self.new_category!r} is already a category")


PROFILE_UPDATE_SHARE = 0.30
LATE_AGGREGATE_SHARE = 0.02
BACKFILL_SHARE = 0.01

TRANSACTIONS_SCHEMA = pa.schema(
    [
        ("transaction_id", pa.int64()),
        ("user_id", pa.int64()),
        ("merchant_category", pa.string()),
        ("amount", pa.float64()),
        ("event_timestamp", TIMESTAMP),
        ("is_fraud", pa.int64()),
    ]
)
LABELS_SCHEMA = pa.schema(
    [("transaction_id", pa.int64()), ("is_fraud", pa.int64()), ("labelled_at", TIMESTAMP)]
)
USER_PROFILES_SCHEMA = pa.schema(
    [
        ("user_id", pa.int64()),
        ("account_age_days", pa.int64()),
        ("credit_limit", pa.float64()),
        ("country", pa.string()),
        ("event_timestamp", TIMESTAMP),
        ("created_timestamp", TIMESTAMP),
    ]
)
AGGREGATE_WINDOWS = (1, 7, 30)
USER_DAILY_AGGREGATES_SCHEMA = pa.schema(
    [("user_id", pa.int64())]
    + [
        field
        for w in AGGREGATE_WINDOWS
        for field in ((f"txn_count_{w}d", pa.int64()), (f"txn_amount_{w}d", pa.float64()))
    ]
    + [
        ("avg_amount_30d", pa.float64()),
        ("event_timestamp", TIMESTAMP),
        ("created_timestamp", TIMESTAMP),
    ]
)


@dataclass(frozen=True)
class SyntheticDataConfig:
    """What to generate; the defaults give a small demo data set."""

    transactions: int = 200_000
    users: int | None = None  # default: max(200, transactions // 100)
    days: int = 90  # length of the transaction window
    end: datetime = datetime(2026, 11, 1, tzinfo=timezone.utc)  # fixed window end: determinism
    seed: int = 7
    fraud_rate: float = 0.03  # target positive rate
    drift: DriftScenario | None = None  # a drifted period at the end (monitoring demo)

    @property
    def n_users(self) -> int:
        return self.users if self.users is not None else max(200, self.transactions // 100)

    def validate(self) -> None:
        """Raise ValueError naming the offending field."""
        if self.transactions < 1:
            raise ValueError(f"transactions must be >= 1, got {self.transactions}")
        if self.users is not None and self.users < 1:
            raise ValueError(f"users must be >= 1, got {self.users}")
        if self.days < 2:
            raise ValueError(f"days must be >= 2, got {self.days}")
        if not 0.0 < self.fraud_rate < 0.5:
            raise ValueError(f"fraud_rate must be in (0, 0.5), got {self.fraud_rate}")
        if self.end.tzinfo is None or self.end.utcoffset() is None:
            raise ValueError(f"end must be timezone-aware, got {self.end!r}")
        if self.drift is not None:
            self.drift.validate(self.end - timedelta(days=self.days), self.end)


@dataclass(frozen=True)
class GeneratedData:
    """Paths and summary of one generated data set."""

    out_dir: Path
    transactions: Path
    user_profiles: Path
    user_daily_aggregates: Path
    labels: Path
    rows: dict[str, int]
    fraud_rate: float


@dataclass(frozen=True)
class _Window:
    start: int  # microseconds since the epoch, inclusive
    end: int  # exclusive
    days: int


@dataclass(frozen=True)
class _Users:
    signup: np.ndarray  # int64 us since epoch
    typical_amount: np.ndarray  # float64, the user's usual spend
    credit_limit: np.ndarray  # float64
    country: np.ndarray  # int index into COUNTRIES


def generate(config: SyntheticDataConfig, out_dir: Path, progress: bool = True) -> GeneratedData:
    """Generate the four Parquet files into ``out_dir`` and return their paths and row counts."""
    config.validate()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(config.seed)
    end_us = (config.end - EPOCH) // timedelta(microseconds=1)
    window = _Window(start=end_us - config.days * US_PER_DAY, end=end_us, days=config.days)

    tables: dict[str, pa.Table] = {}
    with tqdm(total=6, desc="synthetic data", unit="stage", disable=not progress) as bar:

        def done(stage: str) -> None:
            bar.set_postfix_str(stage, refresh=False)
            bar.update()

        users = _users(rng, config.n_users, window)
        done("users")
        user_id, ts = _transaction_times(rng, users, config.transactions, window)
        category, amount = _categories_and_amounts(rng, users, user_id)
        drifted = _drift(config, users, user_id, ts, category, amount)
        done("transactions")
        is_fraud = _fraud_labels(
            rng, users, user_id, ts, category, amount, config.fraud_rate, drifted
        )
        names = [c[0] for c in CATEGORIES]
        if drifted is not None:
            names.append(drifted.scenario.new_category)
            category, amount = drifted.category, drifted.amount
        tables["transactions"] = _transactions_table(user_id, ts, names, category, amount, is_fraud)
        tables["labels"] = _delayed_labels_table(config.seed, ts, is_fraud, window)
        done("labels")
        tables["user_profiles"] = _user_profiles_table(rng, users, window)
        done("profiles")
        tables["user_daily_aggregates"] = _daily_aggregates_table(
            rng, len(users.signup), user_id, ts, amount, window
        )
        done("aggregates")
        paths = {name: out_dir / f"{name}.parquet" for name in tables}
        for name, table in tables.items():
            pq.write_table(table, paths[name])
        done("write")

    return GeneratedData(
        out_dir=out_dir,
        transactions=paths["transactions"],
        user_profiles=paths["user_profiles"],
        user_daily_aggregates=paths["user_daily_aggregates"],
        labels=paths["labels"],
        rows={name: table.num_rows for name, table in tables.items()},
        fraud_rate=float(is_fraud.mean()),
    )


def _users(rng: np.random.Generator, n: int, window: _Window) -> _Users:
    """Per-user attributes. Most accounts predate the window; a few sign up inside it."""
    # Account age at window start: lognormal around ~1.5 years, so some accounts are young.
    age_us = (np.exp(rng.normal(np.log(550), 1.0, n)) * US_PER_DAY).astype(np.int64) + US_PER_HOUR
    signup = window.start - age_us
    # In-window signups leave >= 10% of the window to transact in.
    inside = rng.random(n) < IN_WINDOW_SIGNUP_SHARE
    span = window.end - window.start
    signup[inside] = window.start + rng.integers(0, int(span * 0.9), inside.sum())
    typical_amount = np.exp(rng.normal(np.log(35.0), 0.6, n))
    credit_limit = np.maximum(500.0, np.round(np.exp(rng.normal(np.log(3000), 0.6, n)), -2))
    country_p = np.array([p for _, p in COUNTRIES])
    country = rng.choice(len(COUNTRIES), n, p=country_p / country_p.sum())
    return _Users(signup, typical_amount, credit_limit, country)


def _transaction_times(
    rng: np.random.Generator, users: _Users, n: int, window: _Window
) -> tuple[np.ndarray, np.ndarray]:
    """Who transacts when: heavy-tailed user activity, weekly and hourly seasonality.

    Returns ``(user_id, event_us)`` sorted by time.
    """
    n_users = len(users.signup)
    activity = np.exp(rng.normal(0.0, 0.8, n_users))
    user_id = rng.choice(n_users, n, p=activity / activity.sum())

    first_day = datetime.fromtimestamp(window.start / US_PER_SECOND, tz=timezone.utc).weekday()
    day_p = WEEKDAY_WEIGHTS[(first_day + np.arange(window.days)) % 7]
    day = rng.choice(window.days, n, p=day_p / day_p.sum())
    hour = rng.choice(24, n, p=HOURLY_WEIGHTS / HOURLY_WEIGHTS.sum())
    offset = day * US_PER_DAY + hour * US_PER_HOUR + rng.integers(0, US_PER_HOUR, n)

    # Users who sign up inside the window: squeeze their activity into [signup, end).
    span = window.end - window.start
    signup_offset = np.maximum(users.signup[user_id] - window.start, 0)
    late = signup_offset > 0
    scale = (span - signup_offset[late]) / span
    offset[late] = signup_offset[late] + (offset[late] * scale).astype(np.int64)
    event_us = np.minimum(window.start + offset, window.end - 1)

    order = np.argsort(event_us, kind="stable")
    return user_id[order], event_us[order]


def _categories_and_amounts(
    rng: np.random.Generator, users: _Users, user_id: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Merchant category index and amount: lognormal around typical amount x category factor."""
    share = np.array([c[1] for c in CATEGORIES])
    factor = np.array([c[2] for c in CATEGORIES])
    category = rng.choice(len(CATEGORIES), len(user_id), p=share / share.sum())
    mean = users.typical_amount[user_id] * factor[category]
    amount = np.round(mean * np.exp(rng.normal(0.0, 0.5, len(user_id))), 2)
    return category, np.maximum(amount, 0.01)


@dataclass(frozen=True)
class _Drifted:
    """The transactions as the drift scenario changes them."""

    scenario: DriftScenario
    rows: np.ndarray  # bool: in the drifted period
    category: np.ndarray
    amount: np.ndarray


def _drift(
    config: SyntheticDataConfig,
    users: _Users,
    user_id: np.ndarray,
    event_us: np.ndarray,
    category: np.ndarray,
    amount: np.ndarray,
) -> _Drifted | None:
    """The scenario's categories and amounts (new arrays), or None without a scenario."""
    drift = config.drift
    if drift is None:
        return None
    drift_rng = np.random.default_rng([config.seed, 1])  # its own stream: earlier rows unchanged
    rows = event_us >= (drift.start - EPOCH) // timedelta(microseconds=1)
    moved = rows & (drift_rng.random(len(user_id)) < drift.new_category_share)
    category, amount = category.copy(), amount.copy()
    category[moved] = len(CATEGORIES)
    typical = users.typical_amount[user_id[moved]] * drift.new_category_amount_factor
    amount[moved] = np.round(typical * np.exp(drift_rng.normal(0.0, 0.5, moved.sum())), 2)
    amount[rows] = np.maximum(np.round(amount[rows] * drift.amount_scale, 2), 0.01)
    return _Drifted(drift, rows, category, amount)


def _fraud_labels(
    rng: np.random.Generator,
    users: _Users,
    user_id: np.ndarray,
    event_us: np.ndarray,
    category: np.ndarray,
    amount: np.ndarray,
    fraud_rate: float,
    drifted: _Drifted | None = None,
) -> np.ndarray:
    """Logistic labels: large relative amounts, risky categories, young accounts, bursts; in
    a drifted period, the scenario's categories, amounts and risks instead.

    The intercept is calibrated on the data without the scenario, so the labels before its
    start are exactly those of the same config without drift.
    """
    risk = np.array([c[3] for c in CATEGORIES])
    age_days = (event_us - users.signup[user_id]) / US_PER_DAY
    night = ((event_us // US_PER_HOUR) % 24 < 5).astype(np.float64)
    shared = (
        1.5 * np.exp(-age_days / 30.0)
        + 0.4 * np.minimum(_previous_24h_count(user_id, event_us), 10)
        + rng.normal(0.0, 0.5, len(user_id))
    )

    def relative_amount(values: np.ndarray) -> np.ndarray:
        return 1.6 * np.log(values / users.typical_amount[user_id])

    logit = relative_amount(amount) + risk[category] + NIGHT_FRAUD_EFFECT * night + shared
    intercept = _calibrate_intercept(logit, fraud_rate)
    if drifted is not None:
        risk = np.append(risk, drifted.scenario.new_category_risk)
        effect = np.where(drifted.rows, drifted.scenario.night_fraud_effect, NIGHT_FRAUD_EFFECT)
        logit = relative_amount(drifted.amount) + risk[drifted.category] + effect * night + shared
    p = 1.0 / (1.0 + np.exp(-(logit + intercept)))
    return (rng.random(len(p)) < p).astype(np.int64)


def _previous_24h_count(user_id: np.ndarray, event_us: np.ndarray) -> np.ndarray:
    """Number of the same user's transactions in the preceding 24 hours (time-sorted input)."""
    seconds = (event_us - event_us.min()) // US_PER_SECOND
    # One sortable key per (user, time); the gap between users exceeds any 24 h look-back.
    stride = int(seconds.max()) + 2 * 86_400
    key = user_id.astype(np.int64) * stride + seconds
    order = np.argsort(key, kind="stable")
    sorted_key = key[order]
    count = np.empty(len(key), dtype=np.int64)
    count[order] = np.arange(len(key)) - np.searchsorted(sorted_key, sorted_key - 86_400)
    return count


def _calibrate_intercept(logit: np.ndarray, target: float) -> float:
    """Bisection for the shift b with mean(sigmoid(logit + b)) == target (on <= 1M values)."""
    sample = logit[:: max(1, len(logit) // 1_000_000)]
    lo, hi = -30.0, 30.0
    for _ in range(50):
        mid = (lo + hi) / 2
        if np.mean(1.0 / (1.0 + np.exp(-(sample + mid)))) < target:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


def _user_profiles_table(rng: np.random.Generator, users: _Users, window: _Window) -> pa.Table:
    """Initial profile row per user plus credit-limit updates inside the window.

    Pre-window users' first row is a warehouse snapshot taken shortly before the window; users
    who sign up inside it get their first row at signup, so they have no earlier history.
    """
    n = len(users.signup)
    snapshot = window.start - rng.integers(US_PER_HOUR, 30 * US_PER_DAY, n)
    first = np.maximum(users.signup, snapshot)

    # ~30% of users get 1-3 updates at random times after their first row.
    updated = np.flatnonzero(rng.random(n) < PROFILE_UPDATE_SHARE)
    upd_user = np.repeat(updated, rng.integers(1, 4, len(updated)))
    upd_from = np.maximum(first[upd_user], window.start)
    upd_time = upd_from + (rng.random(len(upd_user)) * (window.end - upd_from)).astype(np.int64)
    upd_factor = rng.choice([0.5, 0.8, 1.25, 1.5, 2.0], len(upd_user))

    user = np.concatenate([np.arange(n), upd_user])
    event = np.concatenate([first, upd_time])
    log_factor = np.concatenate([np.zeros(n), np.log(upd_factor)])
    order = np.lexsort((event, user))
    user, event, log_factor = user[order], event[order], log_factor[order]
    # Limit changes compound per user: cumulative sum of log factors within each user's rows.
    cum = np.cumsum(log_factor)
    user_start = np.searchsorted(user, user)
    cum -= cum[user_start] - log_factor[user_start]
    credit_limit = np.maximum(500.0, np.round(users.credit_limit[user] * np.exp(cum), -2))

    created = event + rng.integers(US_PER_SECOND * 60, 2 * US_PER_HOUR, len(event))
    by_time = np.lexsort((user, event))
    return pa.Table.from_arrays(
        [
            pa.array(user[by_time]),
            pa.array((event - users.signup[user])[by_time] // US_PER_DAY),
            pa.array(credit_limit[by_time]),
            _strings([c for c, _ in COUNTRIES], users.country[user][by_time]),
            _timestamps(event[by_time]),
            _timestamps(created[by_time]),
        ],
        schema=USER_PROFILES_SCHEMA,
    )


def _daily_aggregates_table(
    rng: np.random.Generator,
    n_users: int,
    user_id: np.ndarray,
    event_us: np.ndarray,
    amount: np.ndarray,
    window: _Window,
) -> pa.Table:
    """Daily batch job output: rolling windows over days <= d, stamped at the end of day d."""
    days = window.days
    day = (event_us - window.start) // US_PER_DAY
    cell = user_id * days + day
    count = np.bincount(cell, minlength=n_users * days).reshape(n_users, days)
    total = np.bincount(cell, weights=amount, minlength=n_users * days).reshape(n_users, days)
    # Prefix sums along days with a leading zero: window sum = cs[d + 1] - cs[d + 1 - w].
    count_cs = np.pad(np.cumsum(count, axis=1), ((0, 0), (1, 0)))
    total_cs = np.pad(np.cumsum(total, axis=1), ((0, 0), (1, 0)))

    # Rows where the user was active in the 7 days ending on d, ordered by day then user.
    d_end = np.arange(1, days + 1)
    active_7d = count_cs[:, d_end] - count_cs[:, np.maximum(d_end - 7, 0)] > 0
    d_idx, u_idx = np.nonzero(active_7d.T)
    columns: dict[str, np.ndarray] = {"user_id": u_idx.astype(np.int64)}
    for w in AGGREGATE_WINDOWS:
        lo = np.maximum(d_idx + 1 - w, 0)
        columns[f"txn_count_{w}d"] = count_cs[u_idx, d_idx + 1] - count_cs[u_idx, lo]
        columns[f"txn_amount_{w}d"] = np.round(total_cs[u_idx, d_idx + 1] - total_cs[u_idx, lo], 2)
    columns["avg_amount_30d"] = np.round(columns["txn_amount_30d"] / columns["txn_count_30d"], 2)
    event = window.start + (d_idx + 1) * US_PER_DAY
    rows = len(event)
    delay = rng.integers(US_PER_HOUR, 4 * US_PER_HOUR, rows)
    late = rng.random(rows) < LATE_AGGREGATE_SHARE
    delay[late] = rng.integers(US_PER_DAY + US_PER_HOUR, 3 * US_PER_DAY, late.sum())
    columns["event_timestamp"] = event
    columns["created_timestamp"] = event + delay

    # Backfills: a corrected second version of ~1% of rows that lands 1-5 days later.
    redo = np.flatnonzero(rng.random(rows) < BACKFILL_SHARE)
    fix = rng.uniform(0.9, 1.1, len(redo))
    fixed = {name: values[redo] for name, values in columns.items()}
    for name in fixed:
        if name.startswith(("txn_amount", "avg_amount")):
            fixed[name] = np.round(fixed[name] * fix, 2)
    fixed["created_timestamp"] = fixed["created_timestamp"] + rng.integers(
        US_PER_DAY, 5 * US_PER_DAY, len(redo)
    )
    # Insert each correction right after its original to keep (event, user) order.
    columns = {name: np.insert(values, redo + 1, fixed[name]) for name, values in columns.items()}

    arrays = [
        _timestamps(columns[f.name]) if f.type == TIMESTAMP else pa.array(columns[f.name], f.type)
        for f in USER_DAILY_AGGREGATES_SCHEMA
    ]
    return pa.Table.from_arrays(arrays, schema=USER_DAILY_AGGREGATES_SCHEMA)


def _transactions_table(
    user_id: np.ndarray,
    event_us: np.ndarray,
    category_names: list[str],
    category: np.ndarray,
    amount: np.ndarray,
    is_fraud: np.ndarray,
) -> pa.Table:
    return pa.Table.from_arrays(
        [
            pa.array(np.arange(len(user_id), dtype=np.int64)),
            pa.array(user_id.astype(np.int64)),
            _strings(category_names, category),
            pa.array(amount),
            _timestamps(event_us),
            pa.array(is_fraud),
        ],
        schema=TRANSACTIONS_SCHEMA,
    )


def _delayed_labels_table(
    seed: int, event_us: np.ndarray, is_fraud: np.ndarray, window: _Window
) -> pa.Table:
    """The labels that have arrived by the window's end (see the module's docstring)."""
    delay_rng = np.random.default_rng([seed, 2])  # its own stream: the other tables unchanged
    low, high = CHARGEBACK_DAYS
    delay = np.where(
        is_fraud.astype(bool),
        delay_rng.integers(low * US_PER_DAY, high * US_PER_DAY, len(event_us)),
        LEGIT_CONFIRMED_DAYS * US_PER_DAY,
    )
    labelled_at = event_us + delay
    known = np.flatnonzero(labelled_at <= window.end)
    return pa.Table.from_arrays(
        [
            pa.array(known.astype(np.int64)),  # transaction ids are row numbers
            pa.array(is_fraud[known].astype(np.int64)),
            _timestamps(labelled_at[known]),
        ],
        schema=LABELS_SCHEMA,
    )


def _timestamps(us: np.ndarray) -> pa.Array:
    return pa.array(us.astype(np.int64), pa.int64()).cast(TIMESTAMP)


def _strings(names: list[str], index: np.ndarray) -> pa.Array:
    """Plain string column from category indices, built in Arrow (no Python strings per row)."""
    return pa.array(names, pa.string()).take(pa.array(index.astype(np.int64)))
