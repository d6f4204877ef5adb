"""Commands run by hand from the repository root, not part of the installed package: the default
model's training and evaluation (`python3 -m scripts.train_default_model --out OUT`), its
tokenizer's training, and the server's soak test."""
