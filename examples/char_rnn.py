"""Train a character-level LSTM language model with Gluon on a text it writes itself.

The text comes from a small grammar ("the old cat sees a red ball."), so there is
structure to learn: spelling, word order, punctuation. The model is Embedding -> LSTM ->
Dense, hybridized; batches come from ``gluon.data.DataLoader``; the loss is the mean
cross-entropy per character, which falls from ln(vocabulary) towards the grammar's entropy.

    python examples/char_rnn.py [--epochs 8]
"""
import argparse
import logging
import time

import numpy as np

import kiln as mx
from kiln import autograd, gluon
from kiln.gluon import nn, rnn

log = logging.getLogger("char_rnn")

SUBJECTS = ["the cat", "a dog", "the old man", "my friend", "the bird", "a child"]
VERBS = ["sees", "wants", "finds", "takes", "likes"]
OBJECTS = ["a red ball", "the green hat", "some bread", "the small box", "a long stick"]
ENDINGS = [".", " today.", " again.", " at home."]


def make_text(n_sentences, rng):
    parts = []
    for _ in range(n_sentences):
        parts.append("%s %s %s%s" % (SUBJECTS[rng.randint(len(SUBJECTS))], VERBS[rng.randint(len(VERBS))],
                                     OBJECTS[rng.randint(len(OBJECTS))], ENDINGS[rng.randint(len(ENDINGS))]))
    return " ".join(parts)


class CharModel(gluon.HybridBlock):
    def __init__(self, vocab, embed=32, hidden=128, **kwargs):
        super().__init__(**kwargs)
        with self.name_scope():
            self.embed = nn.Embedding(vocab, embed)
            self.lstm = rnn.LSTM(hidden, layout="NTC", input_size=embed)
            self.out = nn.Dense(vocab, flatten=False, in_units=hidden)

    def hybrid_forward(self, F, x):
        return self.out(self.lstm(self.embed(x)))


def train(epochs=8, n_sentences=600, seq_len=32, batch=32, lr=0.01, seed=0):
    """Returns the mean training loss (nats per character) of each epoch."""
    rng = np.random.RandomState(seed)
    mx.random.seed(seed)
    text = make_text(n_sentences, rng)
    chars = sorted(set(text))
    codes = np.array([chars.index(c) for c in text], dtype=np.float32)
    n_seq = (len(codes) - 1) // seq_len
    inputs = codes[:n_seq * seq_len].reshape(n_seq, seq_len)
    targets = codes[1:n_seq * seq_len + 1].reshape(n_seq, seq_len)
    loader = gluon.data.DataLoader(gluon.data.ArrayDataset(inputs, targets), batch_size=batch, shuffle=True,
                                   last_batch="discard")
    net = CharModel(len(chars))
    net.initialize(mx.init.Xavier())
    net.hybridize()
    trainer = gluon.Trainer(net.collect_params(), "adam", {"learning_rate": lr})
    loss_fn = gluon.loss.SoftmaxCrossEntropyLoss()
    losses = []
    for epoch in range(epochs):
        total, count, t0 = 0.0, 0, time.perf_counter()
        for data, label in loader:
            with autograd.record():
                loss = loss_fn(net(data), label)
            loss.backward()
            gluon.utils.clip_global_norm([p.grad() for p in net.collect_params().values()], 5.0)
            trainer.step(data.shape[0])
            total += float(loss.mean().asscalar())
            count += 1
        losses.append(total / count)
        log.info("epoch %d: loss %.3f nats/char (%.1fs)", epoch, losses[-1], time.perf_counter() - t0)
    log.info("sample: %s", sample(net, chars, "the ", 60, seq_len))
    return losses


def sample(net, chars, prefix, length, window):
    """Greedy continuation of ``prefix``, reading the last ``window`` characters (one input
    shape, so the hybridized network compiles once)."""
    text = prefix
    for _ in range(length):
        context = (" " * window + text)[-window:]
        x = mx.nd.array([[chars.index(c) for c in context]])
        text += chars[int(net(x)[0, -1].argmax(axis=0).asscalar())]
    return text


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=8)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    train(epochs=args.epochs)


if __name__ == "__main__":
    main()
