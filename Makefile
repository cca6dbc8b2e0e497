# shardq build.
#
#   make            build ./shardq (CUDA backend when nvcc is found, CPU otherwise)
#   make CUDA=0     force the CPU backend
#   make test       build and run every test; ends with "N passed, N failed"
#   make gpu-build  build the GPU test and benchmark (needs nvcc; run them on a GPU machine)
#   make gpu-test   build and run build/gpu/test_kernels_cuda (CUDA backend vs CPU backend)
#   make gpu-bench  build and run build/gpu/bench_kernels_cuda (timings of the main kernels)
#
# Sources are found by folder: every .c in the library folders goes into
# build/libshardq.a; cli/ (main.c and the subcommands) goes into ./shardq only;
# kernels/cpu or kernels/cuda is the backend; each tests/unit/test_*.c becomes
# a test binary; each tests/tools/*.c a helper tool.

CC       := mpicc
CFLAGS   ?= -O2 -g
CFLAGS   += -std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror -fopenmp -I. -MMD -MP
LDLIBS   := -ljansson -lcurl -lcrypto -lpcre2-8 -llapacke -lopenblas -lm -lpthread
BUILD    := build

NVCC     ?= $(shell command -v nvcc 2>/dev/null)
ifeq ($(CUDA),0)
  NVCC :=
endif

LIB_DIRS := core tokenizer model store quant lora worker coordinator jobs
LIB_SRCS := $(foreach d,$(LIB_DIRS),$(wildcard $(d)/*.c))
CLI_SRCS := $(wildcard cli/*.c)
CPU_SRCS := $(wildcard kernels/cpu/*.c)

ifneq ($(NVCC),)
  BACKEND       := cuda
  CUDA_HOME     ?= $(patsubst %/bin/nvcc,%,$(NVCC))
  NVCCFLAGS     ?= -O2 -g -arch=sm_90
  NVCCFLAGS     += -std=c++17 -I. -Xcompiler -Wall,-Wextra,-Werror -MMD -MP
  BACKEND_SRCS  := $(wildcard kernels/cuda/*.c) worker/device_comm/nccl.c
  BACKEND_CU    := $(wildcard kernels/cuda/*.cu)
  BACKEND_OBJS  := $(BACKEND_SRCS:%.c=$(BUILD)/%.o) $(BACKEND_CU:%.cu=$(BUILD)/%.o)
  CFLAGS        += -I$(CUDA_HOME)/include
  CUDA_LIBS     := -L$(CUDA_HOME)/lib64 -lcusolver -lcublas -lcudart -lstdc++
  LDLIBS        += -L$(CUDA_HOME)/lib64 -lnccl -lcusolver -lcublas -lcudart -lstdc++
else
  BACKEND       := cpu
  BACKEND_OBJS  := $(CPU_SRCS:%.c=$(BUILD)/%.o) $(BUILD)/worker/device_comm/none.o
endif

LIB_OBJS   := $(LIB_SRCS:%.c=$(BUILD)/%.o)
CLI_OBJS   := $(CLI_SRCS:%.c=$(BUILD)/%.o)
LIB        := $(BUILD)/libshardq.a
# Names the backend of the last link; switching backends (CUDA=0 and back) in one
# build folder replaces it, so every program is relinked against the right one.
BACKEND_STAMP := $(BUILD)/backend.$(BACKEND)
TEST_SRCS  := $(wildcard tests/unit/test_*.c)
TEST_BINS  := $(TEST_SRCS:tests/unit/%.c=$(BUILD)/tests/%)
TOOL_SRCS  := $(wildcard tests/tools/*.c)
TOOL_BINS  := $(TOOL_SRCS:tests/tools/%.c=$(BUILD)/tools/%)

.PHONY: all test clean backend-info demo demo-qlora quality gpu-build gpu-test gpu-bench
all: backend-info shardq $(TOOL_BINS)

backend-info:
	@echo "shardq: building the $(BACKEND) backend$(if $(NVCC), (nvcc: $(NVCC)),$(if $(filter 0,$(CUDA)), (CUDA=0), (nvcc not found)))"

$(BACKEND_STAMP):
	@mkdir -p $(BUILD)
	rm -f $(BUILD)/backend.* && touch $@

shardq: $(CLI_OBJS) $(LIB) $(BACKEND_OBJS) $(BACKEND_STAMP)
	$(CC) $(CFLAGS) -o $@ $(CLI_OBJS) $(BACKEND_OBJS) $(LIB) $(LDLIBS)

$(LIB): $(LIB_OBJS)
	@mkdir -p $(dir $@)
	rm -f $@ && ar rcs $@ $^

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c -o $@ $<

$(BUILD)/%.o: %.cu
	@mkdir -p $(dir $@)
	$(NVCC) $(NVCCFLAGS) -c -o $@ $<

# Unit tests always run against the backend this build links; CI has no GPU, so CPU.
$(BUILD)/tests/%: tests/unit/%.c $(LIB) $(BACKEND_OBJS) $(BACKEND_STAMP)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -o $@ $< $(BACKEND_OBJS) $(LIB) $(LDLIBS) -lcmocka

$(BUILD)/tools/%: tests/tools/%.c $(LIB) $(BACKEND_OBJS) $(BACKEND_STAMP)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -o $@ $< $(BACKEND_OBJS) $(LIB) $(LDLIBS)

test: all $(TEST_BINS)
	@bash tests/run_tests.sh

# The demo job: a tiny Llama-architecture model made here, GPTQ 4-bit, perplexity
# before and after. Text: WikiText-2 from ../shared/data when present, else this
# repository's own documentation and sources.
WIKITEXT := ../shared/data/wikitext-2
# bench/QUALITY.md: SmolLM2-135M perplexity under every method (bench/quality.py; needs
# bench/requirements-quality.txt; QUALITY_NSAMPLES / QUALITY_SEQLEN / QUALITY_WINDOWS shrink it).
# It then runs the SmolLM2 sweep (jobs/examples/sweep_smollm2.json: rtn / gptq / gptq act-order x
# bits 3, 4, 8 x group 64, 128) and writes its Pareto report to bench/quality_sweep.html and .md.
quality: all
	python3 bench/quality.py
	./shardq sweep jobs/examples/sweep_smollm2.json
	./shardq report build/sweeps/smollm2/results.jsonl -o bench/quality_sweep.html
	./shardq report build/sweeps/smollm2/results.jsonl -o bench/quality_sweep.md --format md

# The demo runs on this machine: with no GPU visible it builds the CPU backend even where nvcc exists.
DEMO_GPU := $(shell nvidia-smi -L >/dev/null 2>&1 && echo yes)
demo:
	$(MAKE) all $(if $(DEMO_GPU),,CUDA=0)
	rm -rf build/demo build/fixtures/tiny-llama
	mkdir -p build/demo
	$(BUILD)/tools/make_tiny_model build/fixtures/tiny-llama
	if [ -f $(WIKITEXT)/valid.txt ]; then cp $(WIKITEXT)/valid.txt build/demo/calibration.txt; \
	  cp $(WIKITEXT)/test.txt build/demo/evaluation.txt; \
	else cat README.md */*.c > build/demo/calibration.txt; cat */*.h > build/demo/evaluation.txt; fi
	./shardq run jobs/examples/demo_gptq.json
	./shardq status jobs/examples/demo_gptq.json
	./shardq inspect build/demo/output | head -n 24

# QLoRA demo: the real stories260K model (trained on children's stories) adapted to
# WikiText-2 on the CPU backend.
# The model is tiny (hidden 64): one OpenMP thread is fastest, and immune to a busy machine.
STORIES := ../shared/data/stories260K
demo-qlora: export OMP_NUM_THREADS = 1
demo-qlora:
	$(MAKE) all CUDA=0
	rm -rf build/demo-qlora build/demo-qlora-jsonl
	mkdir -p build/demo-qlora
	head -c 300000 $(WIKITEXT)/valid.txt >build/demo-qlora/train.txt
	head -c 60000 $(WIKITEXT)/test.txt >build/demo-qlora/held_out.txt
	./shardq eval --model $(STORIES) --data build/demo-qlora/held_out.txt --seqlen 128 --max-windows 32
	./shardq run jobs/examples/qlora_nf4.json
	./shardq status jobs/examples/qlora_nf4.json
	./shardq eval --model $(STORIES) --adapter build/demo-qlora/adapter --data build/demo-qlora/held_out.txt \
	    --seqlen 128 --max-windows 32
	./shardq run jobs/examples/qlora_jsonl.json

# ---- GPU test and benchmark ------------------------------------------------
# The GPU test links both backends into one program to compare them. The CPU
# backend is compiled a second time under build/gpu/cpu-ref/, its objects are
# joined into one relocatable object (ld -r), and every kn_* symbol in it is
# renamed kn_cpu_* by objcopy --redefine-syms (the list comes from nm, so new
# kernels need no edit here). The test declares the renamed functions through
# build/gpu/kernels_cpu.h, which is kernels/kernels.h with the same renaming.
# These programs are linked with plain gcc against the kernels and core objects
# only (no MPI, no cmocka), so they run on a GPU machine that lacks those.
GPU_DIR       := $(BUILD)/gpu
GPU_CC        ?= gcc
GPU_CFLAGS    := $(filter-out -MMD -MP,$(CFLAGS)) -I$(GPU_DIR)
GPU_LIBS      := $(CUDA_LIBS) -llapacke -lopenblas -lm -lpthread
GPU_KERNEL_OBJS := $(filter-out %/device_comm/nccl.o,$(BACKEND_OBJS))
CPU_REF_RAW   := $(CPU_SRCS:kernels/cpu/%.c=$(GPU_DIR)/cpu-ref/%.o)

$(GPU_DIR)/cpu-ref/%.o: kernels/cpu/%.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c -o $@ $<

$(GPU_DIR)/cpu_ref.o: $(CPU_REF_RAW)
	ld -r -o $(GPU_DIR)/cpu_ref_raw.o $^
	nm --defined-only -g $(GPU_DIR)/cpu_ref_raw.o | awk '$$3 ~ /^kn_/ { print $$3, "kn_cpu_" substr($$3, 4) }' \
	    >$(GPU_DIR)/cpu_ref.syms
	objcopy --redefine-syms=$(GPU_DIR)/cpu_ref.syms $(GPU_DIR)/cpu_ref_raw.o $@

$(GPU_DIR)/kernels_cpu.h: kernels/kernels.h
	@mkdir -p $(dir $@)
	sed -e 's/\bkn_\([a-z0-9_]*\)(/kn_cpu_\1(/g' -e 's/SQ_KERNELS_H/SQ_KERNELS_CPU_H/g' $< >$@

$(GPU_DIR)/test_kernels_cuda: tests/gpu/test_kernels_cuda.c $(GPU_DIR)/kernels_cpu.h $(GPU_DIR)/cpu_ref.o \
                              $(BACKEND_OBJS) $(LIB)
	$(GPU_CC) $(GPU_CFLAGS) -o $@ $< $(GPU_DIR)/cpu_ref.o $(GPU_KERNEL_OBJS) $(LIB) $(GPU_LIBS)

$(GPU_DIR)/bench_kernels_cuda: bench/bench_kernels_cuda.c $(BACKEND_OBJS) $(LIB)
	@mkdir -p $(dir $@)
	$(GPU_CC) $(GPU_CFLAGS) -o $@ $< $(GPU_KERNEL_OBJS) $(LIB) $(GPU_LIBS)

gpu-build:
	@test "$(BACKEND)" = cuda || { echo "gpu-build needs nvcc (the CUDA backend)"; exit 1; }
	$(MAKE) $(GPU_DIR)/test_kernels_cuda $(GPU_DIR)/bench_kernels_cuda

gpu-test: gpu-build
	$(GPU_DIR)/test_kernels_cuda

gpu-bench: gpu-build
	$(GPU_DIR)/bench_kernels_cuda

clean:
	rm -rf $(BUILD) shardq

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)
