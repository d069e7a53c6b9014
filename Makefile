# Thin wrapper over CMake. `make run` trains, evaluates and runs the default model;
# `make test` builds and runs every test, then again under ASan+UBSan.
BUILD ?= build
JOBS ?= 2

.PHONY: all deps build run test bench fuzz clean conformance

all: build

# Each job installs the Debian packages it needs (scripts/setup-deps): the base set for build and
# run, plus the test, bench or fuzz set when deps is made for `make test`, `bench` or `fuzz`.
test: DEPS = --test
bench: DEPS = --bench
fuzz: DEPS = --fuzz
deps:
	@scripts/setup-deps $(DEPS)

build: deps
	@cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=Release >/dev/null
	@cmake --build $(BUILD) -j $(JOBS)

run: build
	@scripts/run-main $(BUILD)

test: build
	@cd $(BUILD) && ctest --output-on-failure -j $(JOBS)
	@cmake -S . -B $(BUILD)-asan -DCMAKE_BUILD_TYPE=Debug -DKILN_SANITIZE=ON >/dev/null
	@cmake --build $(BUILD)-asan -j $(JOBS)
	@cd $(BUILD)-asan && KILN_SANITIZED=1 ctest --output-on-failure -j $(JOBS)
	@scripts/size-check

bench: build
	@scripts/bench $(BUILD)

# The ONNX backend suite's node tests whose ops the importer supports (also part of `make test`).
conformance: DEPS = --test
conformance: build
	@$(BUILD)/conformance_onnx

clean:
	rm -rf $(BUILD) $(BUILD)-asan $(BUILD)-fuzz

# Builds the loader fuzz targets with clang's libFuzzer and runs each for FUZZ_SECONDS, starting
# from tests/fuzz_seeds/TARGET where there are seeds.
FUZZ_SECONDS ?= 60
FUZZ_TARGETS = fuzz_safetensors fuzz_idx fuzz_model fuzz_spec fuzz_npy fuzz_image fuzz_jpeg fuzz_npy_pair \
               fuzz_image_folder fuzz_text fuzz_onnx
fuzz: deps
	@cmake -S . -B $(BUILD)-fuzz -DCMAKE_C_COMPILER=clang -DCMAKE_BUILD_TYPE=Debug -DKILN_FUZZ=ON >/dev/null
	@cmake --build $(BUILD)-fuzz -j $(JOBS) --target $(FUZZ_TARGETS)
	@for f in $(FUZZ_TARGETS); do \
	    echo "== $$f ($(FUZZ_SECONDS) s)"; \
	    mkdir -p $(BUILD)-fuzz/corpus/$$f; \
	    seeds=""; [ -d tests/fuzz_seeds/$$f ] && seeds=tests/fuzz_seeds/$$f; \
	    $(BUILD)-fuzz/$$f -max_total_time=$(FUZZ_SECONDS) -print_final_stats=1 $(BUILD)-fuzz/corpus/$$f $$seeds 2>&1 | tail -3 || exit 1; \
	done
