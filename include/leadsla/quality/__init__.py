"""The data-quality gate: Great Expectations suites over CRM rows, before they reach the store.

`rules` (the tunables, include/config/quality.yaml), `frame` (CRM rows -> the facts the suites
check), `suites` (the committed GX suites), `gate` (validation with row-level verdicts),
`quarantine` (the sync hook: quarantine, flags, release, replay, incidents). Importing this
package never imports Great Expectations; only `gate.validate` does, inside the call.
"""
