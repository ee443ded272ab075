from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any

import pytest

from degrees37_imagegen import InvalidRequestError
from degrees37_imagegen.batch import (
    Job,
    JobsFileError,
    load_jobs,
    parse_jobs,
    parse_shard,
    shard,
)
from degrees37_imagegen.batch.jobs import (
    check_prompt,
    default_output_dir,
    prompt_problem,
)
from degrees37_imagegen.batch.manifest import needs_remake


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return path


def problems(path: Path) -> list[str]:
    with pytest.raises(JobsFileError) as info:
        load_jobs(path)
    return [str(p) for p in info.value.problems]


# -- formats -----------------------------------------------------------------------------


def test_yaml_list_with_strings_and_mappings(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "book.yaml",
        """
        - a lighthouse at dusk
        - prompt: a fox in the snow
          negative_prompt: blurry
          width: 512
          height: 768
          seed: 7
          name: fox
          steps: 30
          cfg_scale: 6.5
        """,
    )
    first, second = load_jobs(path)
    assert first == Job(index=1, prompt="a lighthouse at dusk", line=1, source=str(path))
    assert first.name == "001-a-lighthouse-at-dusk"
    assert first.filename == "001-a-lighthouse-at-dusk.png"
    assert (first.width, first.height, first.seed) == (1080, 1920, -1)
    assert second.line == 2
    assert second.name == "fox"
    assert (second.width, second.height, second.seed) == (512, 768, 7)
    assert second.negative_prompt == "blurry"
    assert dict(second.extra) == {"steps": 30, "cfg_scale": 6.5}
    assert second.request() == {
        "prompt": "a fox in the snow",
        "negative_prompt": "blurry",
        "width": 512,
        "height": 768,
        "seed": 7,
        "steps": 30,
        "cfg_scale": 6.5,
    }


def test_yaml_mapping_with_defaults(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "book.yml",
        """
        defaults:
          width: 1080
          height: 1920
          negative_prompt: text, watermark
          steps: 25
        jobs:
          - prompt: scene one
          - prompt: scene two
            steps: 40
            generator: comfy
        """,
    )
    one, two = load_jobs(path)
    assert one.negative_prompt == two.negative_prompt == "text, watermark"
    assert dict(one.extra) == {"steps": 25}
    assert dict(two.extra) == {"steps": 40}
    assert (one.generator, two.generator) == (None, "comfy")
    assert (one.line, two.line) == (7, 8)


def test_json_list_and_mapping(tmp_path: Path) -> None:
    listed = tmp_path / "a.json"
    listed.write_text(json.dumps([{"prompt": "one"}, "two"], indent=2), encoding="utf-8")
    jobs = load_jobs(listed)
    assert [j.prompt for j in jobs] == ["one", "two"]
    assert [j.line for j in jobs] == [2, 5]
    mapped = tmp_path / "b.json"
    mapped.write_text(
        json.dumps({"defaults": {"width": 64}, "jobs": [{"prompt": "x"}]}), encoding="utf-8"
    )
    (job,) = load_jobs(mapped)
    assert job.width == 64


def test_json_lines(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "jobs.jsonl",
        """
        {"prompt": "one", "seed": 1}

        {"prompt": "two", "name": "second"}
        """,
    )
    one, two = load_jobs(path)
    assert (one.line, two.line) == (1, 3)
    assert (one.seed, two.name) == (1, "second")


def test_csv_types_cells_and_keeps_prompts_as_text(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "jobs.csv",
        """
        prompt,width,height,seed,name,steps,upscale,sampler
        1984,512,768,,,30,true,euler
        "a long prompt, with a comma
        and a line break",64,64,5,two,,,
        """,
    )
    one, two = load_jobs(path)
    assert one.prompt == "1984"
    assert (one.width, one.height, one.seed) == (512, 768, -1)
    assert dict(one.extra) == {"steps": 30, "upscale": True, "sampler": "euler"}
    assert one.line == 2
    assert two.prompt == "a long prompt, with a comma\nand a line break"
    assert (two.line, two.name, dict(two.extra)) == (3, "two", {})


def test_unknown_extension_is_read_as_yaml(tmp_path: Path) -> None:
    path = write(tmp_path, "jobs.txt", "- one\n- two\n")
    assert [j.prompt for j in load_jobs(path)] == ["one", "two"]


def test_parse_jobs_from_python() -> None:
    jobs = parse_jobs(["a", {"prompt": "b", "width": 8}], defaults={"height": 16})
    assert [(j.index, j.prompt, j.width, j.height) for j in jobs] == [
        (1, "a", 1080, 16),
        (2, "b", 8, 16),
    ]
    assert jobs[0].where == "job 1"


def test_names_are_stable_across_positions() -> None:
    jobs = parse_jobs(["A cat, at night!", "x" * 100])
    assert jobs[0].name == "001-a-cat-at-night"
    assert jobs[1].name == "002-" + "x" * 48


# -- problems ----------------------------------------------------------------------------


def test_every_problem_is_reported_at_once_with_job_and_line(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "jobs.yaml",
        """
        - prompt: fine
          name: scene
        - negative_prompt: no prompt here
        - prompt: 42
          width: big
          height: -5
        - prompt: ok
          seed: 99999999999
          name: ../escape
        - prompt: again
          name: Scene
        - prompt: reserved
          on_progress: 1
          "bad key": 2
        - 17
        """,
    )
    assert problems(path) == [
        f"{path}: job 2 (line 3): missing 'prompt'",
        f"{path}: job 3 (line 4): 'prompt' must be text, got 42 (int)",
        f"{path}: job 3 (line 4): 'width' must be a whole number of pixels, got 'big' (str)",
        f"{path}: job 3 (line 4): 'height' must be positive, got -5",
        f"{path}: job 4 (line 7): 'seed' must be at most 4294967295, got 99999999999",
        f"{path}: job 4 (line 7): 'name' must be a file name without extension or folder "
        "(letters, digits, '.', '_', '-'; starting with a letter or digit), "
        "got '../escape' (str)",
        f"{path}: job 5 (line 10): output name 'Scene' is already used by job 1 (line 1)",
        f"{path}: job 6 (line 12): key 'on_progress' is reserved",
        f"{path}: job 6 (line 12): key 'bad key' (str) is not a valid parameter name",
        f"{path}: job 7 (line 15): must be a mapping with a 'prompt' (or a prompt string), got int",
    ]


def test_jobs_file_error_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(InvalidRequestError):
        parse_jobs([{"width": 5}])


def test_duplicate_default_and_given_names() -> None:
    with pytest.raises(JobsFileError) as info:
        parse_jobs(
            ["a", {"prompt": "b", "name": "001-a"}, {"prompt": "c", "name": "contact_sheet"}]
        )
    assert [str(p) for p in info.value.problems] == [
        "job 2: output name '001-a' is already used by job 1",
        "job 3: output name 'contact_sheet' is reserved for the contact sheet",
    ]


def test_bad_types_for_the_other_keys() -> None:
    with pytest.raises(JobsFileError) as info:
        parse_jobs(
            [
                {"prompt": " "},
                {"prompt": "x", "negative_prompt": 3, "seed": True, "generator": 5},
                {"prompt": "y", "name": "y.png", "width": 1.5},
            ]
        )
    assert [str(p) for p in info.value.problems] == [
        "job 1: 'prompt' is empty",
        "job 2: 'negative_prompt' must be text, got 3 (int)",
        "job 2: 'seed' must be a whole number (-1 for random), got True (bool)",
        "job 2: 'generator' must be a generator name, got 5 (int)",
        "job 3: 'width' must be a whole number of pixels, got 1.5 (float)",
        "job 3: 'name' is the file's stem: drop '.png' from 'y.png'",
    ]


def test_whole_file_problems(tmp_path: Path) -> None:
    assert problems(tmp_path / "missing.yaml") == [
        f"{tmp_path / 'missing.yaml'}: jobs file not found"
    ]
    bad_yaml = write(tmp_path, "bad.yaml", "- a\n- b: c: d\n")
    # libyaml ends the message "in this context", PyYAML's own parser "here".
    (bad_yaml_problem,) = problems(bad_yaml)
    assert bad_yaml_problem.startswith(f"{bad_yaml}:2: invalid YAML: mapping values are not")
    bad_json = write(tmp_path, "bad.json", '[{"prompt": "x"},\n {"prompt": }]\n')
    assert problems(bad_json)[0].startswith(f"{bad_json}:2: invalid JSON:")
    bad_jsonl = write(tmp_path, "bad.jsonl", '{"prompt": "x"}\n{oops}\n{"prompt": "y"}\nnope\n')
    assert problems(bad_jsonl) == [
        f"{bad_jsonl}:2: invalid JSON: Expecting property name enclosed in double quotes",
        f"{bad_jsonl}:4: invalid JSON: Expecting value",
    ]
    not_list = write(tmp_path, "scalar.yaml", "just a prompt\n")
    assert problems(not_list) == [f"{not_list}: the jobs must be a list"]
    keys = write(tmp_path, "keys.yaml", "default: {}\njobs: [x]\n")
    assert problems(keys) == [
        f"{keys}: unknown top-level key(s) default (expected 'defaults' and 'jobs')"
    ]
    no_jobs = write(tmp_path, "nojobs.yaml", "defaults: {width: 5}\n")
    assert problems(no_jobs) == [f"{no_jobs}: no 'jobs:' list"]
    csv_file = write(tmp_path, "bad.csv", "prompt,,prompt\nx,y,z,w\n")
    assert problems(csv_file) == [
        f"{csv_file}:1: column 2 has no name",
        f"{csv_file}:1: column 'prompt' appears twice",
        f"{csv_file}:2: 4 cells but only 3 columns",
    ]


def test_a_csv_quote_never_closed_is_an_error_not_one_long_prompt(tmp_path: Path) -> None:
    path = write(tmp_path, "jobs.csv", 'prompt,seed\n"unclosed,1\nb,2\n')
    assert problems(path) == [
        f"{path}:2: invalid CSV: a quoted cell starts on this line and its closing quote "
        "never comes"
    ]
    header = write(tmp_path, "header.csv", '"prompt,seed\na,1\n')
    assert problems(header) == [
        f"{header}:1: invalid CSV: a quoted cell starts on this line and its closing quote "
        "never comes"
    ]


def test_csv_rows_after_a_bad_row_are_still_checked(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "jobs.csv",
        """
        prompt,seed
        ok,1
        "ab"c,2
        fine,x
        "two
        lines",3
        last,"never closed
        """,
    )
    with pytest.raises(JobsFileError) as info:
        load_jobs(path)
    assert [str(p) for p in info.value.problems] == [
        f'{path}:3: invalid CSV: text after the closing quote of a cell (a quote inside is "")',
        f"{path}: job 3 (line 4): 'seed' must be a whole number (-1 for random), got 'x' (str)",
        f"{path}:7: invalid CSV: a quoted cell starts on this line and its closing quote "
        "never comes",
    ]
    # The jobs without a problem keep their index (a bad row still counts as a job).
    assert [(j.index, j.prompt) for j in info.value.jobs] == [(1, "ok"), (4, "two\nlines")]


def test_json_lines_problems_of_every_kind_in_file_order(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "jobs.jsonl",
        """
        {"prompt": "a", "width": "w"}
        {oops}

        {"prompt": ""}
        {"prompt": "fine"}
        """,
    )
    assert problems(path) == [
        f"{path}: job 1 (line 1): 'width' must be a whole number of pixels, got 'w' (str)",
        f"{path}:2: invalid JSON: Expecting property name enclosed in double quotes",
        f"{path}: job 3 (line 4): 'prompt' is empty",
    ]


def test_json_problems_name_each_jobs_line(tmp_path: Path) -> None:
    path = tmp_path / "jobs.json"
    data = {"defaults": {"width": 64}, "jobs": [{"prompt": "a"}, {"prompt": "b", "seed": "x"}, 3]}
    path.write_text(json.dumps(data, indent=2), encoding="utf-8")
    assert problems(path) == [
        f"{path}: job 2 (line 9): 'seed' must be a whole number (-1 for random), got 'x' (str)",
        f"{path}: job 3 (line 13): must be a mapping with a 'prompt' (or a prompt string), got int",
    ]
    flat = tmp_path / "flat.json"
    flat.write_text('["a", {"prompt": "b",\n "seed": 1.5}, "c",\n\n "d"]', encoding="utf-8")
    assert problems(flat) == [
        f"{flat}: job 2 (line 1): 'seed' must be a whole number (-1 for random), got 1.5 (float)"
    ]
    flat.write_text('["a", {"prompt": "b",\n "seed": 1}, "c",\n\n "d"]', encoding="utf-8")
    assert [j.line for j in load_jobs(flat)] == [1, 1, 2, 4]


def test_a_yaml_alias_bomb_is_refused_at_once(tmp_path: Path) -> None:
    lines = ['- &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for prev, name in zip("abcdefgh", "bcdefghi"):
        lines.append(f"- &{name} [" + ", ".join([f"*{prev}"] * 9) + "]")
    path = write(tmp_path, "bomb.yaml", "\n".join(lines) + "\n")
    assert problems(path) == [
        f"{path}:7: invalid YAML: aliases expand this to more than 1,000,000 values: refused "
        "as an alias bomb ('billion laughs')"
    ]


def test_yaml_anchors_for_shared_keys_still_work(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "jobs.yaml",
        """
        - &base {prompt: one, width: 64, height: 64}
        - {<<: *base, prompt: two}
        - *base
        """,
    )
    jobs = load_jobs(path)
    assert [(j.prompt, j.width) for j in jobs] == [("one", 64), ("two", 64), ("one", 64)]
    assert [j.line for j in jobs[:2]] == [1, 2]


def test_empty_files_give_no_jobs(tmp_path: Path) -> None:
    assert load_jobs(write(tmp_path, "e.yaml", "")) == []
    assert load_jobs(write(tmp_path, "e.csv", "")) == []


# -- shards ------------------------------------------------------------------------------


@pytest.mark.parametrize("n", [1, 2, 3, 4, 7, 30])
def test_shards_cover_every_job_exactly_once(n: int) -> None:
    jobs = parse_jobs([f"scene {i}" for i in range(25)])
    seen = [job.index for k in range(1, n + 1) for job in shard(jobs, k, n)]
    assert sorted(seen) == [job.index for job in jobs]


def test_a_job_keeps_its_shard_when_jobs_are_added() -> None:
    short = parse_jobs([f"scene {i}" for i in range(10)])
    longer = parse_jobs([f"scene {i}" for i in range(15)])
    for k in (1, 2, 3):
        assert {j.name for j in shard(short, k, 3)} <= {j.name for j in shard(longer, k, 3)}


@pytest.mark.parametrize("text", ["0/2", "3/2", "1/0", "a/b", "1", "1/2/3"])
def test_bad_shard_text(text: str) -> None:
    with pytest.raises(ValueError, match="K/N"):
        parse_shard(text)


def test_shard_text() -> None:
    assert parse_shard(" 2 / 5 ") == (2, 5)
    with pytest.raises(ValueError, match="K/N"):
        shard([], 3, 2)


# -- one rule for prompts ----------------------------------------------------------------------


@pytest.mark.parametrize("prompt", ["", "   ", "\t\n"])
def test_empty_prompt_is_refused_by_the_one_rule(prompt: str) -> None:
    assert prompt_problem(prompt) == "is empty"
    with pytest.raises(InvalidRequestError) as info:
        check_prompt(prompt)
    assert str(info.value) == "the prompt is empty: say what the image should show"
    with pytest.raises(JobsFileError) as jobs_info:
        parse_jobs([{"prompt": prompt}])
    assert str(jobs_info.value) == "job 1: 'prompt' is empty"


def test_check_prompt_keeps_a_real_prompt() -> None:
    assert check_prompt("  a fox ") == "  a fox "
    assert prompt_problem("日本の灯台") is None
    assert prompt_problem(3) == "must be text, got 3 (int)"


# -- default output folders ------------------------------------------------------------------


def test_default_output_dir_is_the_stem(tmp_path: Path) -> None:
    (tmp_path / "book.yaml").write_text("- a\n")
    (tmp_path / "book.png").write_text("not a jobs file")
    assert default_output_dir(tmp_path / "book.yaml") == Path("book")


def test_jobs_files_with_one_stem_get_different_folders(tmp_path: Path) -> None:
    for name in ("book.yaml", "book.csv", "book.jsonl"):
        (tmp_path / name).write_text("prompt\na\n")
    folders = {default_output_dir(tmp_path / n) for n in ("book.yaml", "book.csv", "book.jsonl")}
    assert folders == {Path("book-yaml"), Path("book-csv"), Path("book-jsonl")}


def test_default_output_dir_of_a_missing_file_or_odd_stem(tmp_path: Path) -> None:
    assert default_output_dir(tmp_path / "nothing.json") == Path("nothing")
    (tmp_path / "[x].yaml").write_text("- a\n")
    (tmp_path / "[x].csv").write_text("prompt\na\n")
    assert default_output_dir(tmp_path / "[x].csv") == Path("[x]-csv")


# -- a changed job is remade -------------------------------------------------------------------


def _record(job: Job, **changes: Any) -> dict[str, Any]:
    return {"name": job.name, "status": "done", "request": {**job.request(), **changes}}


def test_needs_remake_when_the_request_changed() -> None:
    (job,) = parse_jobs([{"name": "scene", "prompt": "a fox", "steps": 30}])
    assert not needs_remake(_record(job), job)
    assert needs_remake(_record(job, prompt="a wolf"), job)
    assert needs_remake(_record(job, steps=20), job)
    assert needs_remake(_record(job, width=512), job)
    (changed,) = parse_jobs([{"name": "scene", "prompt": "a fox in the snow", "steps": 30}])
    assert needs_remake(_record(job), changed)


def test_needs_remake_only_when_the_record_says_so() -> None:
    (job,) = parse_jobs([{"name": "scene", "prompt": "a fox", "size": [2, 3]}])
    assert not needs_remake(None, job)
    assert not needs_remake({"name": "scene", "status": "done"}, job)  # an older manifest
    assert not needs_remake({**_record(job, prompt="x"), "status": "failed"}, job)
    # As read back from JSON: the tuple-or-list and missing-or-None differences do not count.
    from_json = json.loads(json.dumps(_record(job)))
    assert not needs_remake(from_json, job)
    assert not needs_remake({**from_json, "request": {**from_json["request"], "x": None}}, job)
