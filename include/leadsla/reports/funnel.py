"""The handoff funnel MQL -> SAL -> SQL -> Opportunity, rejections, SAL acceptance, lead-source and
campaign performance, and leakage (MQLs with no sales activity).

The cohort is the leads that became MQL in the period; their later stages count up to the
period's end (so a re-run of a past period is stable). Every table keeps `record_ids`. Never
reads the store or the clock.
"""

from __future__ import annotations

import pandas as pd

from leadsla.reports.data import FUNNEL, REJECTED, ReportData
from leadsla.reports.metrics import ids, ids_by
from leadsla.reports.period import Period


def cohort(data: ReportData, period: Period) -> pd.DataFrame:
    """One row per lead that became MQL in the period: lead attributes plus `<stage>_at` for each
    funnel and rejection stage reached before the period's end, `rejected_at`, `rejected`,
    `first_activity_at` (first activity at or after the MQL, before the end).
    """
    st = data.stages[data.stages["at"] < period.end]
    wide = st.pivot_table(index="record_id", columns="stage", values="at", aggfunc="min")
    for stage in FUNNEL + REJECTED:
        if stage not in wide.columns:
            wide[stage] = pd.Series(dtype="datetime64[us, UTC]")
    wide = wide[FUNNEL + REJECTED]
    wide.columns = [f"{c}_at" for c in wide.columns]
    mql = wide[(wide["MQL_at"] >= period.start) & (wide["MQL_at"] < period.end)].reset_index()
    out = mql.merge(data.leads, on="record_id", how="left")
    out["rejected_at"] = out[["Recycled_at", "Disqualified_at"]].min(axis=1)
    out["rejected"] = out["rejected_at"].notna()
    for col in ("lead_source", "lead_type", "campaign", "rejection_reason"):
        out[col] = out[col].fillna("(none)")
    acts = data.activities[data.activities["created_at"] < period.end][["who_id", "created_at"]]
    joined = acts.merge(out[["record_id", "MQL_at"]], left_on="who_id", right_on="record_id")
    first = joined[joined["created_at"] >= joined["MQL_at"]].groupby("record_id")["created_at"].min()
    # An empty `first` has no datetime dtype and pandas refuses to map it onto datetimes.
    out["first_activity_at"] = (
        out["record_id"].map(first)
        if len(first)
        else pd.Series(pd.NaT, index=out.index, dtype="datetime64[us, UTC]")
    )
    return out


def funnel(c: pd.DataFrame) -> pd.DataFrame:
    """Stage counts, conversion from the previous stage and from MQL, and the average cycle time
    (days) from the previous stage, for the cohort."""
    rows = []
    for i, stage in enumerate(FUNNEL):
        reached = c[c[f"{stage}_at"].notna()]
        row = {"stage": stage, "leads": len(reached), "record_ids": ids(reached["record_id"])}
        if i:
            prev = FUNNEL[i - 1]
            n_prev = int(c[f"{prev}_at"].notna().sum())
            row["from_previous"] = len(reached) / n_prev if n_prev else float("nan")
            gap = (reached[f"{stage}_at"] - reached[f"{prev}_at"]).dt.total_seconds() / 86400
            row["avg_days_from_previous"] = float(gap.mean()) if gap.notna().any() else float("nan")
        else:
            row["from_previous"] = float("nan")
            row["avg_days_from_previous"] = float("nan")
        row["from_mql"] = len(reached) / len(c) if len(c) else float("nan")
        rows.append(row)
    return pd.DataFrame(rows)


def _rates(c: pd.DataFrame, by: str) -> pd.DataFrame:
    c = c.assign(_sal=c["SAL_at"].notna(), _sql=c["SQL_at"].notna(), _opp=c["Opportunity_at"].notna())
    g = c.groupby(by, sort=True)
    out = g.agg(
        mqls=("record_id", "size"),
        sal=("_sal", "sum"),
        sql=("_sql", "sum"),
        opportunities=("_opp", "sum"),
        rejected=("rejected", "sum"),
    ).reset_index()
    out["sal_acceptance"] = out["sal"] / out["mqls"]
    out["mql_to_sql"] = out["sql"] / out["mqls"]
    out["rejection_rate"] = out["rejected"] / out["mqls"]
    out["record_ids"] = ids_by(g, "record_id")
    out["sql_ids"] = g["record_id"].agg(lambda s: ids(s[c.loc[s.index, "_sql"]])).values
    return out


def by_source(c: pd.DataFrame) -> pd.DataFrame:
    """Lead-source performance: MQLs, SAL acceptance, SQLs, opportunities, rejection rate."""
    return _rates(c, "lead_source")


def by_campaign(c: pd.DataFrame) -> pd.DataFrame:
    """Campaign performance (which campaigns produce SQLs), most SQLs first."""
    return (
        _rates(c, "campaign").sort_values(["sql", "campaign"], ascending=[False, True]).reset_index(drop=True)
    )


def by_lead_type(c: pd.DataFrame) -> pd.DataFrame:
    return _rates(c, "lead_type")


def rejection_reasons(c: pd.DataFrame) -> pd.DataFrame:
    """Rejected cohort leads by reason: count, share of all rejects, record_ids; most first."""
    r = c[c["rejected"]]
    g = r.groupby("rejection_reason", sort=True)
    out = g.agg(rejects=("record_id", "size")).reset_index()
    out["share"] = out["rejects"] / len(r) if len(r) else 0.0
    out["record_ids"] = ids_by(g, "record_id")
    return out.sort_values(["rejects", "rejection_reason"], ascending=[False, True]).reset_index(drop=True)


def rejection_rate(c: pd.DataFrame) -> dict:
    """Rejected / MQLs in the cohort."""
    r = c[c["rejected"]]
    return {
        "rejected": len(r),
        "mqls": len(c),
        "rate": len(r) / len(c) if len(c) else float("nan"),
        "record_ids": ids(r["record_id"]),
    }


def no_activity(c: pd.DataFrame) -> dict:
    """MQLs of the cohort with no sales activity at all by the period's end."""
    n = c[c["first_activity_at"].isna()]
    return {
        "leads": len(n),
        "mqls": len(c),
        "share": len(n) / len(c) if len(c) else float("nan"),
        "record_ids": ids(n["record_id"]),
    }


def leakage(c: pd.DataFrame, period: Period, days: int = 7) -> dict:
    """Lead leakage: cohort MQLs that were MQL at least `days` days before the period's end and had
    no activity within their first `days` days (they sat untouched for a week or more). The share is
    of the cohort MQLs old enough to be judged.
    """
    limit = pd.Timedelta(days=days)
    eligible = c[c["MQL_at"] <= pd.Timestamp(period.end) - limit]
    untouched = eligible["first_activity_at"].isna() | (
        eligible["first_activity_at"] - eligible["MQL_at"] > limit
    )
    leaked = eligible[untouched]
    return {
        "leaked": len(leaked),
        "eligible": len(eligible),
        "share": len(leaked) / len(eligible) if len(eligible) else float("nan"),
        "record_ids": ids(leaked["record_id"]),
        "days": days,
    }


def rejection_trend(data: ReportData, period: Period, weeks: int = 8) -> pd.DataFrame:
    """Rejects per reason per week (the week the lead was rejected), for the `weeks` weeks ending with
    the period."""
    st = data.stages[data.stages["stage"].isin(REJECTED) & (data.stages["at"] < period.end)]
    st = st.sort_values("at").drop_duplicates("record_id")
    start = pd.Timestamp(period.end) - pd.Timedelta(weeks=weeks)
    st = st[st["at"] >= start].merge(
        data.leads[["record_id", "rejection_reason"]], on="record_id", how="left"
    )
    st["rejection_reason"] = st["rejection_reason"].fillna("(none)")
    local = st["at"].dt.tz_convert(period.timezone)
    st["week"] = (local.dt.normalize() - pd.to_timedelta(local.dt.day_of_week, unit="D")).dt.strftime(
        "%Y-%m-%d"
    )
    return (
        st.groupby(["week", "rejection_reason"])
        .size()
        .rename("rejects")
        .reset_index()
        .sort_values(["week", "rejection_reason"])
        .reset_index(drop=True)
    )
