# ropex: one plain Makefile. `make` builds, `make test` runs every test (fast and slow),
# `make asan` runs the fast tests under AddressSanitizer + UndefinedBehaviorSanitizer.
# Missing libraries: `make deps` (scripts/setup.sh) installs the Debian packages in scripts/deps.txt.

CC      ?= cc
PKGS    := openblas libcjson inih hdf5 libzstd libpcre2-8
# `make MPI=1`: data-parallel training over Open MPI (mpicc), built into build-mpi/ beside build/.
ifeq ($(MPI),1)
CC      := mpicc
BUILD   ?= build-mpi
EXTRA_CFLAGS += -DROPEX_MPI
endif
STD     := -std=c11 -D_DEFAULT_SOURCE -Wall -Wextra -Werror -fopenmp
OPT     ?= -O3 -march=native
BUILD   ?= build

# `make test`, `make demo` and `make demo-yarn` install what is missing first (scripts/setup.sh) and
# then build in a sub-make, so only goals that compile at once check here.
ifeq ($(filter deps clean help test demo demo-yarn,$(MAKECMDGOALS)),)
MISSING := $(strip $(foreach p,$(PKGS),$(if $(shell pkg-config --exists $(p) && echo y),,$(p))))
ifneq ($(MISSING),)
$(error missing libraries: $(MISSING). Run `make deps` (installs the Debian packages in scripts/deps.txt))
endif
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS))
PKG_LIBS   := $(shell pkg-config --libs $(PKGS))
# Pin the OpenMP build of OpenBLAS at run time too, whatever the system's alternative points to:
# BLAS and our loops then share one OpenMP thread pool.
BLAS_DIR   := $(shell pkg-config --variable=libdir openblas)
endif

CFLAGS  := $(STD) $(OPT) $(PKG_CFLAGS) $(EXTRA_CFLAGS)
LDLIBS  := $(PKG_LIBS) -Wl,-rpath,$(BLAS_DIR) -lpthread -lm $(EXTRA_LDLIBS)

MODEL_SRC := model/model.c model/ops.c model/attention.c model/rope.c model/hf_config.c model/hf_io.c \
             model/safetensors.c model/ckpt_h5.c model/llama2c.c model/fsutil.c
TRAIN_SRC := train/main.c train/config.c train/train.c train/eval.c train/cmd_eval.c train/cmd_rope.c \
             train/cmd_ckpt.c train/cmd_data.c train/cmd_plot.c train/cpu.c train/dist.c
OPTIM_SRC := optim/adamw.c optim/schedule.c
DATA_SRC  := data/util.c data/tokenizer.c data/shard.c data/stream.c data/prepare.c data/synth.c
DATA_OBJ  := $(DATA_SRC:%.c=$(BUILD)/%.o)
LIB_OBJ   := $(MODEL_SRC:%.c=$(BUILD)/%.o)
OPTIM_OBJ := $(OPTIM_SRC:%.c=$(BUILD)/%.o)
TESTS     := test_ops test_model test_rope test_ckpt test_eval parity_dump ckpt_logits stream_dump optim_dump
TEST_BINS := $(TESTS:%=$(BUILD)/tests/%)
BENCHES   := bench_ckpt bench_train bench_data
BENCH_BINS := $(BENCHES:%=$(BUILD)/bench/%)

.PHONY: all test test-fast asan bench clean deps help demo demo-yarn demo-data fixture
all: $(BUILD)/ropex $(TEST_BINS) $(BENCH_BINS)

help:
	@echo "make          build $(BUILD)/ropex and the test programs"
	@echo "make demo     install what is missing, build, extend the tiny fixture 2048 -> 8192 (PI), evaluate, plot"
	@echo "make demo-yarn  the same with YaRN (configs/demo-yarn.ini)"
	@echo "make demo-data  build the demo corpus into data/demo"
	@echo "make fixture  pretrain the tiny fixture (six stages, about 88 minutes on a 2-core Zen 4) and export it to models/tiny-2k"
	@echo "make deps     install the Debian packages ropex needs (scripts/deps.txt)"
	@echo "make test     install what is missing, build, run every test"
	@echo "make asan     fast tests under ASan + UBSan (build-asan/)"
	@echo "make bench    benchmarks (figures, not pass/fail)"
	@echo "make clean    remove build outputs"

deps:
	@scripts/setup.sh

$(BUILD)/%.o: %.c $(wildcard model/*.h optim/*.h data/*.h train/*.h tests/*.h bench/*.h) Makefile
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c $< -o $@

$(BUILD)/ropex: $(LIB_OBJ) $(DATA_OBJ) $(OPTIM_OBJ) $(TRAIN_SRC:%.c=$(BUILD)/%.o)
	$(CC) $(CFLAGS) $^ -o $@ $(LDLIBS)

$(BUILD)/tests/%: $(BUILD)/tests/%.o $(LIB_OBJ) $(DATA_OBJ) $(OPTIM_OBJ) $(BUILD)/train/eval.o
	$(CC) $(CFLAGS) $^ -o $@ $(LDLIBS)
# test_ops counts the attention kernel's allocations against attention_work_bytes
$(BUILD)/tests/test_ops: LDLIBS += -Wl,--wrap=malloc -Wl,--wrap=free

$(BUILD)/bench/%: $(BUILD)/bench/%.o $(LIB_OBJ) $(OPTIM_OBJ) $(DATA_OBJ) $(BUILD)/train/cpu.o
	$(CC) $(CFLAGS) $^ -o $@ $(LDLIBS)

bench: all
	@/usr/bin/python3 bench/run.py $(BUILD) $(if $(filter keep,$(BENCH_BLAS_ENV)),--keep-blas-env)
	@$(BUILD)/bench/bench_ckpt smollm-135m
	@$(BUILD)/bench/bench_data
	@if command -v mpicc >/dev/null; then $(MAKE) --no-print-directory MPI=1 BUILD=build-mpi build-mpi/ropex && \
	  { [ -f data/demo/manifest.json ] || scripts/demo-data.sh data/demo >/dev/null; } && \
	  /usr/bin/python3 bench/mpi.py $(BUILD) build-mpi data/demo; fi

demo:
	@scripts/setup.sh
	@$(MAKE) --no-print-directory $(BUILD)/ropex
	@scripts/demo.sh configs/demo.ini

demo-yarn:
	@scripts/setup.sh
	@$(MAKE) --no-print-directory $(BUILD)/ropex
	@scripts/demo.sh configs/demo-yarn.ini

demo-data: $(BUILD)/ropex
	@scripts/demo-data.sh data/demo

fixture: $(BUILD)/ropex
	@scripts/fixture.sh

test:
	@scripts/setup.sh
	@$(MAKE) --no-print-directory all
	@$(MAKE) --no-print-directory MPI=1 BUILD=build-mpi build-mpi/ropex
	@tests/run.sh $(BUILD) build-mpi

test-fast: all
	@tests/run.sh --fast $(BUILD)

asan:
	@$(MAKE) --no-print-directory BUILD=build-asan OPT="-O1 -g -fno-omit-frame-pointer" \
	  EXTRA_CFLAGS="-fsanitize=address,undefined -fno-sanitize-recover=all" \
	  EXTRA_LDLIBS="-fsanitize=address,undefined" test-fast

clean:
	rm -rf build build-asan build-mpi
.SECONDARY:
