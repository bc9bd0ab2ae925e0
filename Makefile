# ngx_pullthrough: build, run and test an nginx pull-through registry cache.
#
#   make          install missing Debian packages, build the dynamic module
#   make run      build, then run nginx with the module in the foreground
#   make test     build, then run the test suite with prove
#   make bench    benchmarks (see README)
#   make fuzz     libFuzzer targets of the parsers, FUZZ_SECONDS each (60)
#   make deb      the Debian package libnginx-mod-http-pullthrough, in
#                 BUILD_DIR/deb (packaging: pkg/debian)
#
# Variables: NGINX_SRC (nginx source or Debian nginx-dev tree), NGINX_BIN (the
# nginx binary that loads the module), PORT, STATE_DIR, TEST_JOBS, and for
# "make run" TAG_TTL (pullthrough_tag_ttl: how long a cached tag is served
# before the upstream is asked again, e.g. 30s, 5m; 0: every time) and
# MAX_SIZE (the store's size cap, max_size= of pullthrough_store, e.g. 20g;
# empty: none) and CONFIG (a declarative file of remotes and distributions,
# pullthrough_config; empty: none).

NGINX_BIN  ?= /usr/sbin/nginx
NGINX_SRC  ?= /usr/share/nginx/src
BUILD_DIR  ?= $(CURDIR)/build
PORT       ?= 24817
TAG_TTL    ?= 60s
MAX_SIZE   ?=
CONFIG     ?=
STATE_DIR  ?= $(CURDIR)/var
TEST_JOBS  ?= 2
EXTRA_CC_OPT ?=
EXTRA_LD_OPT ?=

MODULE     := $(BUILD_DIR)/nginx/objs/ngx_http_pullthrough_module.so
SOURCES    := config ngx_pullthrough_module.c $(wildcard src/*.c src/*.h)

# Debian packages: to build, to run, and what the tests drive.
BUILD_PKGS := gcc make nginx nginx-dev liblmdb-dev libyajl-dev \
              libcurl4-openssl-dev libssl-dev
RUN_PKGS   := nginx ca-certificates openssl
TEST_PKGS  := perl lmdb-utils docker-registry skopeo podman containerd jq httpie curl \
              openssl apache2-utils tinyproxy stunnel4 \
              python3-packaging python3-schema python3-tomli-w python3-multidict \
              lintian

# to build the Debian package (nginx-dev, in BUILD_PKGS, has dh_nginx)
DEB_PKGS   := build-essential debhelper dpkg-dev

# the module's version (src/ngx_pt.h) and the package's, from the top
# entry of its changelog: its upstream part must be the module's
VERSION     := $(shell sed -n 's/^\#define NGX_PT_VERSION *"\(.*\)"$$/\1/p' src/ngx_pt.h)
DEB_VERSION := $(shell sed -n '1s/^[^ ]* (\([^ ]*\)) .*/\1/p' pkg/debian/changelog)
DEB_ARCH    := $(shell dpkg --print-architecture 2>/dev/null)
DEB_DIR     := $(BUILD_DIR)/deb
DEB         := $(DEB_DIR)/libnginx-mod-http-pullthrough_$(DEB_VERSION)_$(DEB_ARCH).deb
DEB_SOURCES := $(SOURCES) Makefile README.md $(wildcard docs/*.md) \
               $(shell find pkg/debian -type f 2>/dev/null)

# the data-plane tests, run again with every remote reached through
# libcurl (the transport of remotes with a proxy, a CA or a client cert)
CURL_TESTS := t/100-pull.t t/110-registry-api.t t/120-fill-integrity.t \
              t/125-upstream-failures.t t/130-repositories.t \
              t/140-fill-lifecycle.t t/145-range-miss.t \
              t/160-tag-freshness.t \
              t/165-stale-if-error.t t/170-index-versions.t \
              t/180-hierarchy.t \
              t/200-upstream-access.t t/310-attack-lying-upstream.t \
              t/410-store-lifecycle.t \
              t/330-attack-process-faults.t \
              t/210-upstream-token.t

SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

# nginx's configure flags must match the binary's for --with-compat to hold:
# Debian's nginx-dev ships them in conf_flags; other trees get the minimum.
NGINX_CONF_FLAGS ?= $(shell if [ -f $(NGINX_SRC)/conf_flags ]; then \
	bash -c '. $(NGINX_SRC)/conf_flags; echo "$${NGX_CONF_FLAGS[@]}"'; \
	else echo --with-compat --with-threads; fi)

.PHONY: all build module deps deps-build deps-run deps-test deps-deb run test \
        bench fuzz deb clean distclean

all: build

build: deps-build $(MODULE)

deps: deps-build deps-run deps-test deps-deb

deps-build:
	@$(MAKE) --no-print-directory -s apt-install PKGS="$(BUILD_PKGS)"
deps-run:
	@$(MAKE) --no-print-directory -s apt-install PKGS="$(RUN_PKGS)"
deps-test:
	@$(MAKE) --no-print-directory -s apt-install PKGS="$(TEST_PKGS)"
deps-deb:
	@$(MAKE) --no-print-directory -s apt-install PKGS="$(DEB_PKGS)"

# Installs only what is missing; silent when everything is there.
apt-install:
	@missing=; for p in $(PKGS); do \
	    dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'ok installed' \
	        || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	    echo "installing Debian packages:$$missing"; \
	    $(SUDO) apt-get update -qq && \
	    DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq \
	        --no-install-recommends $$missing >/dev/null || exit 1; \
	fi

$(BUILD_DIR)/nginx/objs/Makefile: config
	rm -rf $(BUILD_DIR)/nginx
	mkdir -p $(BUILD_DIR)
	cp -r $(NGINX_SRC) $(BUILD_DIR)/nginx
	cd $(BUILD_DIR)/nginx && ./configure $(NGINX_CONF_FLAGS) \
	    --with-cc-opt='-g -O2 -Wall -Wextra -Werror $(EXTRA_CC_OPT)' \
	    --with-ld-opt='$(EXTRA_LD_OPT)' \
	    --add-dynamic-module=$(CURDIR) > $(BUILD_DIR)/configure.log 2>&1 \
	    || { tail -20 $(BUILD_DIR)/configure.log; exit 1; }

$(MODULE): $(BUILD_DIR)/nginx/objs/Makefile $(SOURCES)
	$(MAKE) -C $(BUILD_DIR)/nginx -f objs/Makefile modules

# the module alone, no packages installed (what the Debian package's
# debian/rules calls)
module: $(MODULE)

# The package is built by dpkg-buildpackage in a copy of the sources under
# BUILD_DIR/deb/src (with pkg/debian as debian/): what it writes, the .deb
# included, stays under BUILD_DIR/deb.
deb: deps-build deps-deb
	@$(MAKE) --no-print-directory $(DEB)

$(DEB): $(DEB_SOURCES)
	@case "$(DEB_VERSION)" in "$(VERSION)"-*) ;; *) \
	    echo "pkg/debian/changelog is at $(DEB_VERSION), the module at" \
	         "$(VERSION): add an entry (dch -c pkg/debian/changelog" \
	         "-v $(VERSION)-1)"; exit 1;; esac
	rm -rf $(DEB_DIR)
	mkdir -p $(DEB_DIR)/src
	cp -r config ngx_pullthrough_module.c src Makefile README.md docs \
	    $(DEB_DIR)/src/
	cp -r pkg/debian $(DEB_DIR)/src/debian
	cd $(DEB_DIR)/src && env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL \
	    dpkg-buildpackage -b --no-sign -J > $(DEB_DIR)/build.log 2>&1 \
	    || { tail -40 $(DEB_DIR)/build.log; exit 1; }
	@echo "built $(DEB)"

run: build deps-run
	@NGINX_BIN=$(NGINX_BIN) MODULE=$(MODULE) PORT=$(PORT) STATE_DIR=$(STATE_DIR) \
	    TAG_TTL=$(TAG_TTL) MAX_SIZE=$(MAX_SIZE) CONFIG=$(CONFIG) \
	    sh t/bin/run-cache

test: build deb deps-test
	@PT_DEB=$(DEB) NGINX_BIN=$(NGINX_BIN) MODULE=$(MODULE) \
	    prove -j$(TEST_JOBS) -I t/lib t/
	@echo "# the same exchanges through libcurl (PT_TRANSPORT=curl)"
	@PT_TRANSPORT=curl NGINX_BIN=$(NGINX_BIN) MODULE=$(MODULE) \
	    prove -j$(TEST_JOBS) -I t/lib $(CURL_TESTS)

# nginx's core is built from Debian's orig tarball of the installed
# release, with the module statically and instrumented (t/fuzz/build)
FUZZ_PKGS := clang libclang-rt-dev curl binutils

fuzz: deps-build
	@$(MAKE) --no-print-directory -s apt-install PKGS="$(FUZZ_PKGS)"
	@NGINX_BIN=$(NGINX_BIN) FUZZ_DIR=$(BUILD_DIR)/fuzz sh t/fuzz/build

bench: build deps-test
	@$(MAKE) --no-print-directory -s apt-install PKGS="wrk"
	@NGINX_BIN=$(NGINX_BIN) MODULE=$(MODULE) perl -I t/lib t/bench/bench.pl

clean:
	rm -rf $(BUILD_DIR)

distclean: clean
	rm -rf $(STATE_DIR)
