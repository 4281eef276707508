"""Text helpers: a subword tokenizer trained on the corpus (`tokenizer`) and sampling from a causal LM
(`generate`). Nothing heavy is imported here: `tokenizers` loads only when a tokenizer is trained or read.
"""
