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
CHAPTERS := $(sort $(wildcard notebooks/[0-9][0-9]_*.py))
# jupyter-book run by $(PYTHON), not whichever jupyter-book is first on PATH (jupyter_book has no __main__).
JUPYTER_BOOK := $(PYTHON) -c "from jupyter_book.cli.main import main; main()"

.PHONY: install book lab notebooks quick check test bench clean

install:  ## the package with everything: the book, running the chapters, the tests
	$(PYTHON) -m pip install -e ".[book,notebooks,test]"

lab: $(UNPACK)  ## JupyterLab on the chapters: a .py opens as a notebook, MyST renders (after make install)
	jupyter lab --LabApp.app_settings_dir=$(CURDIR)/notebooks/jupyterlab-settings notebooks/

$(LOCAL_CIFAR)/train:
	mkdir -p data && tar -xzf $(SHARED_CIFAR) -C data

book:  ## install only what rendering needs (book/requirements.txt, no PyTorch), build the stored outputs into book/_build/html
	$(PYTHON) -m pip install -r book/requirements.txt
	$(JUPYTER_BOOK) build -W -n --keep-going book

notebooks: $(UNPACK)  ## re-run every chapter and store its outputs in the paired .ipynb
	# (then touch the .py: JupyterLab's jupytext refuses to open a pair whose .ipynb is the newer file)
	for nb in $(CHAPTERS); do jupytext --to ipynb --set-kernel python3 --execute $$nb && touch $$nb || exit 1; done

quick: $(UNPACK)  ## train, probe and plot the CPU-sized preset into $(OUT)
	$(PYTHON) -m simclr_core train --preset quick --out $(OUT)
	$(PYTHON) -m simclr_core probe --out $(OUT)
	$(PYTHON) -m simclr_core plots --out $(OUT)

check: $(UNPACK)  ## the fast tier, about a minute, nothing installed: lint and the unit tests neither slow nor browser
	$(PYTHON) -m ruff check .
	$(PYTHON) -m pytest tests -m "not slow and not browser" -q

test: install $(UNPACK)  ## everything CI runs: lint, every unit test (slow, the book build, Chromium), then nbval
	$(PYTHON) -m ruff check .
	$(PYTHON) -m pytest tests --durations=5
	$(PYTHON) -m pytest --nbval --nbval-current-env notebooks --durations=0 -q

bench: install $(UNPACK)  ## CPU benchmarks (about 2.5 hours): throughput (float32, then bf16 where the CPU has it) vs the seed's pipeline, kornia and lightly; every time-to-accuracy candidate; the augmentation and batch-size ablation; feature extraction speed
	$(PYTHON) -m pip install -e ".[bench]"
	$(PYTHON) bench/throughput.py --precision fp32
	$(PYTHON) bench/throughput.py
	$(PYTHON) bench/time_to_accuracy.py
	$(PYTHON) bench/ablation.py
	$(PYTHON) bench/probe_speed.py

clean:
	rm -rf book/_build runs
