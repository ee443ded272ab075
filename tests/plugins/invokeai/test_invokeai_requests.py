"""Boards, style presets, retries that never make a second image, and many threads at once."""

from __future__ import annotations

import threading

import httpx
import pytest
from invokeai_fake import QUEUE, model_record

from degrees37_imagegen import GeneratorConnectionError, InvalidRequestError

ENQUEUE = f"{QUEUE}/enqueue_batch"


@pytest.fixture
def sdxl(fake):
    fake.models = [model_record("sdxl-base", "sdxl")]
    return fake.models[0]


def output_node(body):
    return body["batch"]["graph"]["nodes"]["canvas_output"]


def prompts(body):
    values = {d["node_path"]: d["items"][0] for group in body["batch"]["data"] for d in group}
    return values["positive_prompt"], values["negative_prompt"]


# -- boards -------------------------------------------------------------------------------


def test_board_is_created_once_then_reused(fake, sdxl, make_generator):
    gen = make_generator(default_model="sdxl-base", board_name="renders")
    for _ in range(3):
        gen.generate_image("x")
    assert fake.count("GET", "/api/v1/boards/") == 1
    assert fake.count("POST", "/api/v1/boards/") == 1
    (board,) = fake.boards
    assert board["board_name"] == "renders"
    assert {output_node(b)["board"]["board_id"] for b in fake.enqueued} == {board["board_id"]}


def test_existing_board_is_found_by_name_not_created(fake, sdxl, make_generator):
    make_generator(default_model="sdxl-base", board_name="renders").generate_image("x")
    fresh = make_generator(default_model="sdxl-base", board_name="renders")  # another run
    fresh.generate_image("x")
    assert fake.count("POST", "/api/v1/boards/") == 1
    assert len(fake.boards) == 1
    assert output_node(fake.enqueued[1])["board"] == output_node(fake.enqueued[0])["board"]


def test_of_boards_sharing_a_name_the_oldest_is_used(fake, sdxl, make_generator, captures):
    boards = captures.body("boards_list_all_one.json")
    for board in boards:
        board["board_name"] = "renders"
    fake.boards = boards  # created 06:20:05.653 and 06:20:05.644
    make_generator(default_model="sdxl-base", board_name="renders").generate_image("x")
    assert output_node(fake.enqueued[0])["board"]["board_id"] == boards[1]["board_id"]


def test_no_board_setting_puts_no_board_on_the_node(fake, sdxl, make_generator):
    make_generator(default_model="sdxl-base").generate_image("x")
    assert "board" not in output_node(fake.enqueued[0])
    assert fake.count("GET", "/api/v1/boards/") == 0


def test_board_per_call(fake, sdxl, make_generator):
    gen = make_generator(default_model="sdxl-base", board_name="a")
    gen.generate_image("x", board_name="b")
    assert [b["board_name"] for b in fake.boards] == ["b"]
    assert gen.image_info("1").extra["board"] == "b"


def test_board_answer_lost_does_not_make_a_second_board(fake, sdxl, make_generator):
    fake.add_fault("board", "lost")
    gen = make_generator(default_model="sdxl-base", board_name="renders")
    gen.generate_image("x")
    assert len(fake.boards) == 1
    assert fake.count("POST", "/api/v1/boards/") == 1
    assert output_node(fake.enqueued[0])["board"]["board_id"] == fake.boards[0]["board_id"]


def test_board_request_refused_is_retried(fake, sdxl, make_generator):
    fake.add_fault("board", "connect")
    make_generator(default_model="sdxl-base", board_name="renders").generate_image("x")
    assert len(fake.boards) == 1
    assert fake.count("POST", "/api/v1/boards/") == 2


# -- style presets ------------------------------------------------------------------------


def test_style_preset_is_applied_like_the_web_ui(fake, sdxl, make_generator):
    gen = make_generator(default_model="sdxl-base", style_preset="Photography (General)")
    name = gen.generate_image("a lighthouse", "people")
    positive, negative = prompts(fake.enqueued[0])
    assert positive == "a lighthouse. photography. f/2.8 macro photo, bokeh, photorealism"
    # No placeholder in the preset's negative prompt: appended after the user's.
    assert negative == "people painting, digital art. sketch, blurry"
    info = gen.image_info(name)
    assert (info.prompt, info.negative_prompt) == ("a lighthouse", "people")
    assert info.extra["invokeai_prompt"] == positive
    assert info.extra["style_preset"] == "Photography (General)"


def test_user_preset_with_placeholders_in_both_prompts(fake, sdxl, make_generator, captures):
    fake.presets.append(captures.body("style_preset_get.json"))
    gen = make_generator(default_model="sdxl-base", style_preset="Client Test Preset")
    gen.generate_image("a red fox", "blurry")
    gen.generate_image("a red fox")
    assert prompts(fake.enqueued[0]) == ("a red fox, cinematic, 35mm", "blurry, lowres, watermark")
    assert prompts(fake.enqueued[1]) == ("a red fox, cinematic, 35mm", "lowres, watermark")


def test_preset_without_placeholder_is_appended(fake, sdxl, make_generator):
    fake.presets.append(
        {
            "name": "Plain",
            "preset_data": {"positive_prompt": "oil painting", "negative_prompt": ""},
            "type": "user",
            "is_public": False,
            "id": "p1",
            "user_id": "system",
            "image": None,
        }
    )
    make_generator(default_model="sdxl-base").generate_image("a cat", "dog", style_preset="plain")
    assert prompts(fake.enqueued[0]) == ("a cat oil painting", "dog")


def test_unknown_preset_lists_the_available_ones(fake, sdxl, make_generator):
    gen = make_generator(default_model="sdxl-base", style_preset="Watercolour")
    with pytest.raises(InvalidRequestError) as caught:
        gen.generate_image("x")
    message = str(caught.value)
    assert message.startswith("style_preset: InvokeAI has no style preset 'Watercolour'")
    assert "Anime" in message
    assert "Photography (General)" in message
    assert "Vehicles" in message
    assert fake.enqueued == []
    assert fake.count("GET", "/api/v1/style_presets/") == 2  # re-read once in case it is new


def test_presets_are_read_once(fake, sdxl, make_generator):
    gen = make_generator(default_model="sdxl-base", style_preset="Anime")
    for _ in range(3):
        gen.generate_image("x")
    assert fake.count("GET", "/api/v1/style_presets/") == 1


# -- never a second image -----------------------------------------------------------------


def test_enqueue_that_never_reached_the_server_is_retried(fake, sdxl, make_generator):
    fake.add_fault("enqueue", "connect", "connect")
    name = make_generator(default_model="sdxl-base").generate_image("x")
    assert fake.count("POST", ENQUEUE) == 3
    assert len(fake.items) == 1
    assert name == "1"


def test_lost_enqueue_answer_is_recovered_without_enqueuing_again(fake, sdxl, make_generator):
    fake.add_fault("enqueue", "lost")
    gen = make_generator(default_model="sdxl-base")
    name = gen.generate_image("x")
    assert fake.count("POST", ENQUEUE) == 1
    assert len(fake.items) == 1
    assert gen.image_info(name).extra["image_name"] == fake.items[1].image_name
    destination = fake.items[1].batch["destination"]
    assert (
        fake.calls.count(("GET", f"{QUEUE}/list_all?destination={destination.replace(':', '%3A')}"))
        == 1
    )


def test_dropped_enqueue_is_reported_not_repeated(fake, sdxl, make_generator):
    fake.add_fault("enqueue", "dropped")
    gen = make_generator(default_model="sdxl-base")
    with pytest.raises(GeneratorConnectionError, match="not repeated"):
        gen.generate_image("x")
    assert fake.count("POST", ENQUEUE) == 1
    assert fake.items == {}


def test_refused_enqueue_gives_up_after_the_retries(fake, sdxl, make_generator):
    fake.add_fault("enqueue", *["connect"] * 5)
    gen = make_generator(default_model="sdxl-base", retries=2)
    with pytest.raises(GeneratorConnectionError, match="cannot connect to InvokeAI"):
        gen.generate_image("x")
    assert fake.count("POST", ENQUEUE) == 3
    assert fake.items == {}


def test_polls_ride_out_a_short_outage(fake, sdxl, make_generator):
    fake.add_fault("poll", "connect", "dropped")
    gen = make_generator(default_model="sdxl-base")
    name = gen.generate_image("x")
    assert gen.image_info(name).extra["image_name"] == fake.items[1].image_name
    assert fake.count("POST", ENQUEUE) == 1


def test_polls_ride_out_a_busy_proxy(fake, sdxl, make_generator):
    answers = iter([httpx.Response(503, text="Service Unavailable")])

    def busy_once(request, item_id):
        return next(answers, None) or fake._get_item(request, item_id)

    # A route with the same pattern replaces the fake's.
    fake.router.route(method="GET", path__regex=rf"^{QUEUE}/i/(?P<item_id>\d+)$").mock(
        side_effect=busy_once
    )
    gen = make_generator(default_model="sdxl-base")
    name = gen.generate_image("x")
    assert gen.image_info(name).extra["image_name"] == fake.items[1].image_name


def test_polls_give_up_when_the_server_stays_away(fake, sdxl, make_generator):
    fake.add_fault("poll", *["connect"] * 10)
    gen = make_generator(default_model="sdxl-base", retries=2)
    with pytest.raises(GeneratorConnectionError, match="while waiting for queue item 1") as caught:
        gen.generate_image("x")
    assert caught.value.work == "queued"
    assert fake.count("POST", ENQUEUE) == 1


def test_download_is_retried(fake, sdxl, make_generator, tmp_path):
    gen = make_generator(default_model="sdxl-base")
    name = gen.generate_image("x")
    fake.add_fault("download", "dropped", "connect")
    assert gen.download_image(name, tmp_path / "out.png")
    image_name = gen.image_info(name).extra["image_name"]
    assert fake.count("GET", f"/api/v1/images/i/{image_name}/full") == 3
    assert fake.count("POST", ENQUEUE) == 1


# -- threads ------------------------------------------------------------------------------


def test_many_threads_share_one_generator(fake, sdxl, make_generator, tmp_path):
    gen = make_generator(default_model="sdxl-base", board_name="batch", style_preset="Anime")
    names: list[str] = []
    errors: list[BaseException] = []
    lock = threading.Lock()
    start = threading.Barrier(8)

    def work(i: int) -> None:
        try:
            start.wait()
            name = gen.generate_image(f"image {i}", seed=i)
            gen.download_image(name, tmp_path / f"{i}.png")
            with lock:
                names.append(name)
        except BaseException as exc:
            with lock:
                errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(set(names)) == 8
    assert len(fake.items) == 8
    # The lazy look-ups happened once, whatever the number of threads.
    assert fake.count("GET", "/api/v1/boards/") == 1
    assert fake.count("POST", "/api/v1/boards/") == 1
    assert fake.count("GET", "/api/v2/models/") == 1
    assert fake.count("GET", "/api/v1/style_presets/") == 1
    seeds = sorted(gen.image_info(n).seed for n in names)
    assert seeds == list(range(8))
    assert len(list(tmp_path.glob("*.png"))) == 8
