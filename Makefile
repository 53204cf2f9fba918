# The two entry points of the README, plus conveniences. Each target is self-sufficient:
# it installs missing Debian packages, builds, and fetches models as needed.
.PHONY: demo test build clean

demo:
	@scripts/demo.sh

test:
	@scripts/test.sh

build:
	@scripts/setup-deps.sh && scripts/build.sh

clean:
	rm -rf build
