# simclr-book: the two commands of the README are `make book` and `make test`.
PYTHON ?= python3
OUT ?= runs/quick

# Offline machines: a CIFAR-10 copy unpacked into data/cifar10-jpeg is used instead of downloading.
# (An absolute path, so that notebooks, which run inside notebooks/, find it too.)
SHARED_CIFAR := ../shared/data/cifar10-jpeg.tar.gz
LOCAL_CIFAR := $(CURDIR)/data/cifar10-jpeg
ifneq ($(wildcard $(SHARED_CIFAR))$(wildcard $(LOCAL_CIFAR)/train),)
export SIMCLR_DATA ?= $(LOCAL_CIFAR)
endif
UNPACK := $(addsuffix /train,$(filter $(LOCAL_CIFAR),$(SIMCLR_DATA)))

.PHONY: install book quick test lint clean

install:  ## the package with everything the book and the tests need
	$(PYTHON) -m pip install -e ".[book,test]"

$(LOCAL_CIFAR)/train:
	mkdir -p data && tar -xzf $(SHARED_CIFAR) -C data

book: install
	$(MAKE) quick

quick: $(UNPACK)  ## train, probe and plot the CPU-sized preset into $(OUT)
	$(PYTHON) -m simclr_core train --preset quick --out $(OUT)
	$(PYTHON) -m simclr_core probe --out $(OUT)
	$(PYTHON) -m simclr_core plots --out $(OUT)

test: install $(UNPACK)
	$(PYTHON) -m ruff check .
	$(PYTHON) -m pytest tests

clean:
	rm -rf book/_build runs
