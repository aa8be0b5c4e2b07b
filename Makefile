# The two commands of the README. Both set up everything they need first.
.PHONY: demo test setup fuzz

demo:
	scripts/demo.sh $(ARGS)

test:
	scripts/test.sh

setup:
	scripts/setup.sh

# The fuzz targets of tests/unit/fuzz, thousands of examples each (CI runs 200).
fuzz:
	scripts/setup.sh
	.venv/bin/python -m bench.fuzz $(ARGS)
