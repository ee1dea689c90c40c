"""SimCLR from scratch: encoder, projection head, NT-Xent, two-view augmentation, training, linear probe.

Each module holds one idea; import from the module that holds it (`from simclr_core.engine import train_ssl`).
Read them in this order: model, loss, augment, data, engine, probe, plots; CONTRIBUTING.md says where each idea
lives.
"""
