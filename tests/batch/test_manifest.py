from __future__ import annotations

import json
import threading
from pathlib import Path

from degrees37_imagegen.batch import ManifestWriter, manifest_name, read_manifest


def test_names() -> None:
    assert manifest_name() == "manifest.jsonl"
    assert manifest_name((1, 1)) == "manifest.jsonl"
    assert manifest_name((2, 3)) == "manifest-2-of-3.jsonl"


def test_one_line_per_record_and_last_record_wins(tmp_path: Path) -> None:
    with ManifestWriter(tmp_path / "manifest.jsonl") as writer:
        writer.write({"name": "a", "status": "failed", "finished_at": "2026-01-01T00:00:01"})
        writer.write({"name": "b", "status": "done", "finished_at": "2026-01-01T00:00:02"})
        writer.write({"name": "a", "status": "done", "finished_at": "2026-01-01T00:00:03"})
    lines = (tmp_path / "manifest.jsonl").read_text(encoding="utf-8").splitlines()
    assert [json.loads(line)["name"] for line in lines] == ["a", "b", "a"]
    records = read_manifest(tmp_path)
    assert {k: v["status"] for k, v in records.items()} == {"a": "done", "b": "done"}


def test_a_line_cut_short_by_a_crash_is_ignored_and_not_glued_to(tmp_path: Path) -> None:
    path = tmp_path / "manifest.jsonl"
    path.write_text('{"name": "a", "status": "done"}\n{"name": "b", "sta', encoding="utf-8")
    with ManifestWriter(path) as writer:
        writer.write({"name": "c", "status": "done"})
    assert sorted(read_manifest(tmp_path)) == ["a", "c"]


def test_shard_manifests_are_merged_by_time(tmp_path: Path) -> None:
    with ManifestWriter(tmp_path / manifest_name((1, 2))) as one:
        one.write({"name": "x", "status": "done", "finished_at": "2026-01-01T00:00:05"})
        one.write({"name": "y", "status": "done", "finished_at": "2026-01-01T00:00:01"})
    with ManifestWriter(tmp_path / manifest_name((2, 2))) as two:
        two.write({"name": "x", "status": "failed", "finished_at": "2026-01-01T00:00:02"})
    records = read_manifest(tmp_path)
    assert records["x"]["status"] == "done"
    assert sorted(records) == ["x", "y"]


def test_no_folder_no_records(tmp_path: Path) -> None:
    assert read_manifest(tmp_path / "nowhere") == {}


def test_writes_from_many_threads_stay_whole(tmp_path: Path) -> None:
    writer = ManifestWriter(tmp_path / "manifest.jsonl")

    def write_many(k: int) -> None:
        for i in range(50):
            writer.write({"name": f"{k}-{i}", "pad": "x" * 500})

    threads = [threading.Thread(target=write_many, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    writer.close()
    assert len(read_manifest(tmp_path)) == 400
