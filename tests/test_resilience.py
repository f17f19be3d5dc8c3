"""Fuzzed inputs (short profile), shared models under threads, and the CLI never dying."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

from hypothesis import HealthCheck, given, settings, strategies as st

from demo_core.errors import InputError
from demo_core.intake import load_image

import fuzz  # bench/, on pytest's path (pyproject.toml)

SEEDS = fuzz.seeds()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=4096), st.sampled_from(["x.png", "x.dcm", "upload"]))
def test_intake_on_random_bytes_raises_only_input_error(data, name):
    try:
        load_image(data, name=name)
    except InputError:
        pass


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(sorted(SEEDS)), st.integers(0, 2**32 - 1))
def test_intake_on_mutated_valid_files_raises_only_input_error(fmt, seed):
    import random
    try:
        load_image(fuzz.mutate(SEEDS[fmt], random.Random(seed)))
    except InputError:
        pass


json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=50),
                           lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=8), c, max_size=3),
                           max_leaves=8)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(st.dictionaries(st.sampled_from(["brand", "model", "year", "mileage", "fuel", "transmission", "engine_size"]),
                       json_values | st.sampled_from(["Ford", "Focus", "Petrol", "Manual", "2017", "1.6"])))
def test_car_requests_raise_only_input_error(car_model, request):
    try:
        json.dumps(car_model.predict_request(request).to_dict(), allow_nan=False)
    except InputError:
        pass


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(st.dictionaries(st.sampled_from(["title", "text", "author"]), json_values))
def test_poem_requests_raise_only_input_error(poem_model, request):
    try:
        json.dumps(poem_model.predict_request(request).to_dict(), allow_nan=False)
    except InputError:
        pass


def test_the_bench_fuzzer_finds_nothing_in_a_short_run():
    report = fuzz.run(cases=150, seed=1, with_models=False)
    assert report["unexpected_exceptions"] == 0, report["examples"]


def _threaded_equals_serial(fn, inputs, threads=8, per_thread=10):
    serial = [json.dumps(fn(x)) for x in inputs]
    jobs = [(i % len(inputs)) for i in range(threads * per_thread)]
    with ThreadPoolExecutor(threads) as pool:
        parallel = list(pool.map(lambda i: json.dumps(fn(inputs[i])), jobs))
    assert all(parallel[k] == serial[i] for k, i in enumerate(jobs))


def test_models_shared_across_threads_give_the_serial_answers(xray_model, poem_model, car_model, data_dir):
    from demo_core.examples import poem_examples, xray_examples
    films = [e.path.read_bytes() for e in xray_examples()]
    _threaded_equals_serial(lambda b: xray_model.predict(b).to_dict(), films)
    poems = [(p["title"], p["text"]) for p in poem_examples()[:5]]
    _threaded_equals_serial(lambda p: poem_model.predict(*p).to_dict(), poems)
    cars = [{"brand": "Ford", "model": "Focus", "year": 2015 + i, "mileage": 10000 * i} for i in range(5)]
    _threaded_equals_serial(lambda c: car_model.predict(c).to_dict(), cars)
