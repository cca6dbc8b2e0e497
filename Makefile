# shardq build.
#
#   make            build ./shardq (CUDA backend when nvcc is found, CPU otherwise)
#   make CUDA=0     force the CPU backend
#   make test       build and run every test; ends with "N passed, N failed"
#
# Sources are found by folder: every .c in the library folders goes into
# build/libshardq.a; kernels/cpu or kernels/cuda is the backend; each
# tests/unit/test_*.c becomes a test binary; each tests/tools/*.c a helper tool.

CC       := mpicc
CFLAGS   ?= -O2 -g
CFLAGS   += -std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror -fopenmp -I. -MMD -MP
LDLIBS   := -ljansson -lcurl -lcrypto -lpcre2-8 -llapacke -lopenblas -lm -lpthread
BUILD    := build

NVCC     ?= $(shell command -v nvcc 2>/dev/null)
ifeq ($(CUDA),0)
  NVCC :=
endif

LIB_DIRS := core model store quant lora worker coordinator jobs
LIB_SRCS := $(foreach d,$(LIB_DIRS),$(wildcard $(d)/*.c))
CPU_SRCS := $(wildcard kernels/cpu/*.c)

ifneq ($(NVCC),)
  BACKEND       := cuda
  CUDA_HOME     ?= $(patsubst %/bin/nvcc,%,$(NVCC))
  NVCCFLAGS     ?= -O2 -g -arch=sm_90
  NVCCFLAGS     += -std=c++17 -I. -Xcompiler -Wall,-Wextra,-Werror -MMD -MP
  BACKEND_SRCS  := $(wildcard kernels/cuda/*.c)
  BACKEND_CU    := $(wildcard kernels/cuda/*.cu)
  BACKEND_OBJS  := $(BACKEND_SRCS:%.c=$(BUILD)/%.o) $(BACKEND_CU:%.cu=$(BUILD)/%.o)
  CFLAGS        += -I$(CUDA_HOME)/include
  LDLIBS        += -L$(CUDA_HOME)/lib64 -lnccl -lcusolver -lcublas -lcudart -lstdc++
else
  BACKEND       := cpu
  BACKEND_OBJS  := $(CPU_SRCS:%.c=$(BUILD)/%.o)
endif

LIB_OBJS   := $(LIB_SRCS:%.c=$(BUILD)/%.o)
LIB        := $(BUILD)/libshardq.a
TEST_SRCS  := $(wildcard tests/unit/test_*.c)
TEST_BINS  := $(TEST_SRCS:tests/unit/%.c=$(BUILD)/tests/%)
TOOL_SRCS  := $(wildcard tests/tools/*.c)
TOOL_BINS  := $(TOOL_SRCS:tests/tools/%.c=$(BUILD)/tools/%)

.PHONY: all test clean backend-info demo
all: backend-info shardq $(TOOL_BINS)

backend-info:
	@echo "shardq: building the $(BACKEND) backend$(if $(NVCC), (nvcc: $(NVCC)),$(if $(filter 0,$(CUDA)), (CUDA=0), (nvcc not found)))"

shardq: $(BUILD)/main.o $(LIB) $(BACKEND_OBJS)
	$(CC) $(CFLAGS) -o $@ $(BUILD)/main.o $(BACKEND_OBJS) $(LIB) $(LDLIBS)

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
$(BUILD)/tests/%: tests/unit/%.c $(LIB) $(BACKEND_OBJS)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -o $@ $< $(BACKEND_OBJS) $(LIB) $(LDLIBS) -lcmocka

$(BUILD)/tools/%: tests/tools/%.c $(LIB) $(BACKEND_OBJS)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -o $@ $< $(BACKEND_OBJS) $(LIB) $(LDLIBS)

test: all $(TEST_BINS)
	@bash tests/run_tests.sh

# The demo job: a tiny Llama-architecture model made here, GPTQ 4-bit, perplexity
# before and after. Text: WikiText-2 from ../shared/data when present, else this
# repository's own documentation and sources.
WIKITEXT := ../shared/data/wikitext-2
demo: all
	rm -rf build/demo build/fixtures/tiny-llama
	mkdir -p build/demo
	$(BUILD)/tools/make_tiny_model build/fixtures/tiny-llama
	if [ -f $(WIKITEXT)/valid.txt ]; then cp $(WIKITEXT)/valid.txt build/demo/calibration.txt; \
	  cp $(WIKITEXT)/test.txt build/demo/evaluation.txt; \
	else cat README.md */*.c > build/demo/calibration.txt; cat */*.h > build/demo/evaluation.txt; fi
	./shardq run jobs/examples/demo_gptq.json
	./shardq status jobs/examples/demo_gptq.json
	./shardq inspect build/demo/output | head -n 24

clean:
	rm -rf $(BUILD) shardq

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)
