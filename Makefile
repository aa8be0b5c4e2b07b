# The two commands of the README. Both set up everything they need first.
.PHONY: demo test setup

demo:
	scripts/demo.sh $(ARGS)

test:
	scripts/test.sh

setup:
	scripts/setup.sh
