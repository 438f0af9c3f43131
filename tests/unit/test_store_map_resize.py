"""A map grown by another process (the learner of --workers, kairos import-profiles) is adopted, not fatal."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from service.store.lmdb_store import Store

GROW = """
import sys
from pathlib import Path
from service.store.lmdb_store import Store
store = Store(Path(sys.argv[1]), map_size=64 << 20, owner=False)
store.write(lambda txn: [store.put_subject(txn, "profiles", f"s{i}", b"x" * 1000) for i in range(5000)])
store.close()
"""


def test_transactions_work_after_another_process_grew_the_map_past_ours(tmp_path: Path) -> None:
    store = Store(tmp_path, map_size=1 << 20)
    try:
        subprocess.run([sys.executable, "-c", GROW, str(tmp_path)], check=True, timeout=60)
        with store.read() as txn:  # without adopting the new size: MapResizedError on every transaction
            assert store.get_subject(txn, "profiles", "s4999") == b"x" * 1000
        store.write(lambda txn: store.put_subject(txn, "profiles", "mine", b"y"))
        with store.read() as txn:
            assert store.get_subject(txn, "profiles", "mine") == b"y"
    finally:
        store.close()
