"""Which file a user's model came from, recorded with the sweep, checked before it is trusted again.

A sweep of a user factory (``model.family: "net.py:make_net"``) records in its store (meta key
``model_sources``) the reference, the absolute path of the source file (the module's file for
``package.module:make_net``) and the file's sha256. Two things read it back:

- **resume**: rerunning the sweep into the same directory with a changed file is refused, naming
  the file: finished runs would otherwise sit beside runs of another model under the same ids;
- **rebuild**: ``compress``, ``implicit``, ``landscape``, ``probe``, ``attention`` and the report rebuild
  a run through its factory and load its checkpoint; with a changed file the weights would be
  loaded into another model (or fail to, with a confusing shape error), so they refuse, naming
  the file (the report skips the section and says why). The recorded path is also where a
  relative reference is read from when the command runs in another directory.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from overparam.errors import StoreError

META_KEY = "model_sources"


def source_of(family: str) -> dict[str, Any] | None:
    """{"path", "sha256"} of a user family's source file now; None for a built-in family."""
    from overparam.models import is_user_family
    from overparam.models.user import sha256_of, source_file

    if not is_user_family(family):
        return None
    path = source_file(family)
    if path is None or not path.is_file():
        return {"path": None, "sha256": None}
    return {"path": str(path), "sha256": sha256_of(path)}


def _changed(family: str, recorded: dict[str, Any], now: dict[str, Any], what: str, fix: str) -> StoreError:
    old, new = (recorded.get("sha256") or "?")[:12], (now.get("sha256") or "?")[:12]
    return StoreError(f"{now.get('path') or recorded.get('path')}: the model file of {family!r} changed since "
                      f"{what} (sha256 {old}… then, {new}… now); {fix}")


def check_and_record(store: Any, family: str) -> None:
    """At the start of a sweep: refuse a changed model file once runs were trained from the recorded one
    (resume), else record it (meta ``model_sources``): a store whose runs all failed or wait holds no
    result of the old file, so fixing the file and rerunning is what the user should do."""
    now = source_of(family)
    if now is None:
        return
    sources = dict(store.meta(META_KEY) or {})
    recorded = sources.get(family)
    trained = any(r["status"] in ("done", "diverged") for r in store.runs())  # results exist from the old file
    if trained and recorded and recorded.get("sha256") and recorded.get("sha256") != now["sha256"]:
        raise _changed(family, recorded, now, f"this sweep trained runs from it in {store.dir}",
                       "use a new --out or revert the file")
    sources[family] = now
    store.set_meta(META_KEY, sources)


def check_rebuild(directory: str | Path, family: str) -> None:
    """Before a run is rebuilt from its checkpoint: the factory's file must be the one the sweep recorded.

    Reads the recorded path first (``models.user.remember``), so a relative reference resolves from
    any working directory. Sweeps that recorded nothing (built-in families, older stores) pass.
    """
    from overparam.models import is_user_family
    from overparam.models.user import remember
    from overparam.store import open_store

    if not is_user_family(family):
        return
    with open_store(directory) as store:
        recorded = (store.meta(META_KEY) or {}).get(family)
    if not recorded:
        return
    if recorded.get("path") and Path(recorded["path"]).is_file():
        remember(family, recorded["path"])
    now = source_of(family)
    if recorded.get("sha256") and now is not None and now["sha256"] != recorded["sha256"]:
        raise _changed(family, recorded, now, f"the sweep in {directory} trained its runs",
                       "its checkpoints hold the old model's weights: revert the file, or rerun the sweep with a "
                       "new --out")
