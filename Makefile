# Makefile: build, run and test socklab. `make run` and `make test` do everything
# on a fresh Debian 12 machine (they install what is missing first).

CC      ?= cc
PKGS    := libmicrohttpd libwebsockets jansson libmnl libpcap libnats libcrypto liburing
WARN    := -Wall -Wextra -Wshadow -Wformat=2 -Wstrict-prototypes -Wmissing-prototypes \
           -Wno-unused-parameter -Werror
CFLAGS  ?= -O2 -g
ALL_CFLAGS = -std=gnu11 $(WARN) $(CFLAGS) -D_GNU_SOURCE -Ilabs -Iserver -Ibuild \
             $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
LDLIBS  := $(shell pkg-config --libs $(PKGS) 2>/dev/null) -lpthread -lm
# The lab program (socklab-lab, what each run executes) links only what labs
# use: starting it costs a run about a fifth of starting the server's binary,
# which loads 31 shared libraries (README.md, "A lecture hall presses Run").
LAB_PKGS   := jansson libmnl libpcap
LAB_LDLIBS := $(shell pkg-config --libs $(LAB_PKGS) 2>/dev/null) -lpthread -lm
ASAN    := -O1 -g -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined

LIB_SRC := $(wildcard labs/*.c labs/*/*.c) \
	   $(filter-out server/main.c server/lab_main.c,$(wildcard server/*.c))
WEB     := $(shell find web -path web/npm -prune -o -type f ! -name '*~' -print 2>/dev/null | LC_ALL=C sort)
# Libraries the dashboard embeds, from npm with a lock file (web/npm), copied
# into the binary's assets at /vendor/: the dashboard works offline.
NPM_DIR  := web/npm
NPM_DONE := $(NPM_DIR)/node_modules/.package-lock.json
VENDOR   := build/vendor/vendor/uPlot.esm.js build/vendor/vendor/uPlot.min.css
UNIT    := $(wildcard tests/unit/test_*.c)

OBJ      := $(LIB_SRC:%.c=build/obj/%.o) build/obj/assets.o build/obj/own_shim.o \
	    build/obj/i18n_labs.o
ASAN_OBJ := $(LIB_SRC:%.c=build/asan/obj/%.o) build/asan/obj/assets.o build/obj/own_shim.o \
	    build/obj/i18n_labs.o

.PHONY: all run deps test-deps test asan unit lint bench image clean fuzz fuzzers
all: build/socklab build/socklab-lab

build/tools/embed: server/tools/embed.c
	@mkdir -p $(@D)
	$(CC) -std=gnu11 $(WARN) -O2 -o $@ $<

$(NPM_DONE): $(NPM_DIR)/package.json $(NPM_DIR)/package-lock.json
	cd $(NPM_DIR) && npm ci --no-audit --no-fund --loglevel=error
	@touch $@
build/vendor/vendor/%: $(NPM_DONE)
	@mkdir -p $(@D)
	cp $(NPM_DIR)/node_modules/uplot/dist/$* $@

# The dashboard is compiled into the binary: one file serves a classroom offline.
build/assets.c: build/tools/embed $(WEB) $(VENDOR)
	build/tools/embed web $(WEB) --root build/vendor $(VENDOR) > $@.tmp && mv $@.tmp $@

# The messages labs render (notes, the CLI's, run statuses), a compact subset
# of web/i18n: a run parses it in a fraction of the time the whole files take.
build/tools/i18n_subset: server/tools/i18n_subset.c
	@mkdir -p $(@D)
	$(CC) -std=gnu11 $(WARN) -O2 -o $@ $< $(shell pkg-config --cflags --libs jansson)
build/i18n_labs.c: build/tools/i18n_subset web/i18n/en.json web/i18n/zh-CN.json
	build/tools/i18n_subset en web/i18n/en.json zh-CN web/i18n/zh-CN.json > $@.tmp && mv $@.tmp $@
build/obj/i18n_labs.o: build/i18n_labs.c
	$(CC) $(ALL_CFLAGS) -c -o $@ $<

# The own lab's call-recording shim: a preloaded library (never sanitized: it
# runs inside the student's Python), whose bytes are built into the binary.
build/own/libsocklab-shim.so: labs/own/shim/shim.c labs/own/record.h
	@mkdir -p $(@D)
	$(CC) -std=gnu11 $(WARN) -O2 -g -fPIC -shared -fvisibility=hidden -D_GNU_SOURCE \
	  -o $@ $< -lseccomp
build/obj/own_shim.o: labs/own/shim/blob.S build/own/libsocklab-shim.so
	@mkdir -p $(@D)
	$(CC) -c -DSHIM_SO_PATH='"build/own/libsocklab-shim.so"' -o $@ $<

build/obj/%.o: %.c $(wildcard labs/*.h labs/*/*.h server/*.h)
	@mkdir -p $(@D)
	$(CC) $(ALL_CFLAGS) -c -o $@ $<
build/obj/assets.o: build/assets.c
	$(CC) $(ALL_CFLAGS) -c -o $@ $<
# A build's identity: a hash of its objects, compiled into the library, so the
# server uses a socklab-lab beside it only when both come from the same build.
define BUILD_ID
	@mkdir -p $(@D)
	@printf 'const char socklab_build_id[] = "%s";\n' \
	  "$$(cat $(filter %.o,$^) | sha256sum | cut -c1-16)" > $@.tmp && mv $@.tmp $@
endef
build/buildid.c: $(OBJ)
	$(BUILD_ID)
build/asan/buildid.c: $(ASAN_OBJ)
	$(BUILD_ID)
build/obj/buildid.o: build/buildid.c
	$(CC) $(ALL_CFLAGS) -c -o $@ $<
build/asan/obj/buildid.o: build/asan/buildid.c
	$(CC) $(ALL_CFLAGS) $(ASAN) -c -o $@ $<

build/libsocklab.a: $(OBJ) build/obj/buildid.o
	ar rcs $@ $^
build/socklab: build/obj/server/main.o build/libsocklab.a
	$(CC) $(ALL_CFLAGS) -o $@ $^ $(LDLIBS)
build/socklab-lab: build/obj/server/lab_main.o build/libsocklab.a
	$(CC) $(ALL_CFLAGS) -o $@ $^ $(LAB_LDLIBS)

build/asan/obj/%.o: %.c $(wildcard labs/*.h labs/*/*.h server/*.h)
	@mkdir -p $(@D)
	$(CC) $(ALL_CFLAGS) $(ASAN) -c -o $@ $<
build/asan/obj/assets.o: build/assets.c
	@mkdir -p $(@D)
	$(CC) $(ALL_CFLAGS) $(ASAN) -c -o $@ $<
build/asan/libsocklab.a: $(ASAN_OBJ) build/asan/obj/buildid.o
	ar rcs $@ $^
build/asan/socklab: build/asan/obj/server/main.o build/asan/libsocklab.a
	$(CC) $(ALL_CFLAGS) $(ASAN) -o $@ $^ $(LDLIBS)
build/asan/socklab-lab: build/asan/obj/server/lab_main.o build/asan/libsocklab.a
	$(CC) $(ALL_CFLAGS) $(ASAN) -o $@ $^ $(LAB_LDLIBS)

# One small binary per module test, in a normal and a sanitizer build.
build/tests/%: tests/unit/%.c tests/unit/unit.h build/libsocklab.a
	@mkdir -p $(@D)
	$(CC) $(ALL_CFLAGS) -Itests/unit -o $@ $< build/libsocklab.a $(LDLIBS) -lcmocka
# Reads a JetStream stream back for the --nats tests (tests/integration/test_nats.py).
build/tests/nats_read: tests/tools/nats_read.c
	@mkdir -p $(@D)
	$(CC) $(ALL_CFLAGS) -o $@ $< $(LDLIBS)
# Removes or corrupts one chunk of a run file in the stream (test_nats.py).
build/tests/nats_chunk: tests/tools/nats_chunk.c
	@mkdir -p $(@D)
	$(CC) $(ALL_CFLAGS) -o $@ $< $(LDLIBS)
build/asan/tests/%: tests/unit/%.c tests/unit/unit.h build/asan/libsocklab.a
	@mkdir -p $(@D)
	$(CC) $(ALL_CFLAGS) $(ASAN) -Itests/unit -o $@ $< build/asan/libsocklab.a $(LDLIBS) -lcmocka

# libFuzzer targets (clang): the decoders, the framing codec, the parameter
# parser, the capture file reader and the WebSocket op handler. Each runs
# briefly in `make test` (tests/run); `make fuzz` runs each for FUZZ_RUNS
# executions (default 10 million) and prints the count and the corpus size.
FUZZ_CC ?= clang
FUZZ_FLAGS = -std=gnu11 $(WARN) -g -O1 -fsanitize=fuzzer,address,undefined \
	     -fno-sanitize-recover=undefined -D_GNU_SOURCE -Ilabs -Iserver -Ibuild
FUZZERS := build/fuzz/fuzz_decode build/fuzz/fuzz_framing build/fuzz/fuzz_params \
	   build/fuzz/fuzz_pcap build/fuzz/fuzz_ws
build/fuzz/fuzz_decode: tests/fuzz/fuzz_decode.c $(wildcard labs/decode/*.c labs/decode/*.h)
	@mkdir -p $(@D)
	$(FUZZ_CC) $(FUZZ_FLAGS) -o $@ tests/fuzz/fuzz_decode.c \
	  $(wildcard labs/decode/*.c) $(shell pkg-config --cflags --libs jansson)
build/fuzz/fuzz_framing: tests/fuzz/fuzz_framing.c labs/framing/framing.c labs/framing/framing.h
	@mkdir -p $(@D)
	$(FUZZ_CC) $(FUZZ_FLAGS) -o $@ tests/fuzz/fuzz_framing.c labs/framing/framing.c \
	  $(shell pkg-config --cflags --libs jansson)
# The parser is instrumented; the labs' schemas and checks come from the
# library as they are.
build/fuzz/fuzz_params: tests/fuzz/fuzz_params.c labs/params.c labs/lab.h build/libsocklab.a
	@mkdir -p $(@D)
	$(FUZZ_CC) $(FUZZ_FLAGS) $(shell pkg-config --cflags $(PKGS)) -o $@ \
	  tests/fuzz/fuzz_params.c labs/params.c build/libsocklab.a $(LDLIBS)
build/fuzz/fuzz_pcap: tests/fuzz/fuzz_pcap.c labs/capture/capture.c labs/capture/capture.h
	@mkdir -p $(@D)
	$(FUZZ_CC) $(FUZZ_FLAGS) -o $@ tests/fuzz/fuzz_pcap.c labs/capture/capture.c \
	  $(shell pkg-config --cflags --libs libpcap jansson) -lpthread
# The WebSocket server (its sessions, ops, sign-in and classes: ws*.c but the
# address table and the frame follower) is instrumented; the rest of the
# server comes from the library.
WS_FUZZ_SRC := server/ws.c server/ws_ops.c server/ws_auth.c server/ws_class.c server/ws_quiz.c
build/fuzz/fuzz_ws: tests/fuzz/fuzz_ws.c $(WS_FUZZ_SRC) server/ws.h server/ws_int.h \
		    build/libsocklab.a
	@mkdir -p $(@D)
	$(FUZZ_CC) $(FUZZ_FLAGS) $(shell pkg-config --cflags $(PKGS)) -o $@ \
	  tests/fuzz/fuzz_ws.c $(WS_FUZZ_SRC) build/libsocklab.a $(LDLIBS)
fuzzers: $(FUZZERS)

fuzz: $(FUZZERS)
	@for f in $(FUZZERS); do FUZZ_RUNS=$${FUZZ_RUNS:-10000000} tests/fuzz/run $$f || exit 1; done

unit: $(UNIT:tests/unit/%.c=build/tests/%) build/tests/nats_read build/tests/nats_chunk
asan: build/asan/socklab build/asan/socklab-lab $(UNIT:tests/unit/%.c=build/asan/tests/%)

deps:
	@server/tools/install-deps.sh build

test-deps:
	@server/tools/install-deps.sh test

run: deps
	@$(MAKE) --no-print-directory all
	build/socklab serve $(ARGS)

test: test-deps
	@$(MAKE) --no-print-directory all unit asan lint fuzzers
	@tests/run

# Banned functions (STYLE.md): each has a bounded or safer replacement.
lint:
	@! grep -nwE 'gets|sprintf|vsprintf|strcpy|strcat|strncpy|strtok|atoi|atol|sscanf' \
	    --include='*.c' --include='*.h' -r server labs tests/unit \
	  || { echo "lint: banned function used (see STYLE.md)"; exit 1; }

bench: all
	@bench/run
	@bench/udp-ping

# The container image with podman, offline (README.md, "Containers"); docker users
# run `docker build -f docker/Dockerfile -t socklab .`.
image:
	docker/make-base-image
	CONTAINERS_CONF=$${CONTAINERS_CONF:-$(CURDIR)/docker/containers.conf} \
	  podman build --format docker --pull=never -f docker/Dockerfile -t socklab .

clean:
	rm -rf build
