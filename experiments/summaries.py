"""TensorBoard output of a training run: scalars, images, projector files.

``SummaryWriter`` wraps ``tf.summary`` file writers (TensorFlow is always
installed for the tf.data pipeline, so this also works on the JAX backend).
Runs: ``<logdir>/train`` (loss and its parts, learning rate, hard-pair ratio,
κ, …) and ``<logdir>/eval`` (every retrieval/clustering metric, the
nearest-neighbour grid, the t-SNE plot and the projector embedding).
"""

import os

import numpy as np

GREEN = np.array([40, 180, 60], "uint8")
RED = np.array([220, 40, 40], "uint8")
BLUE = np.array([40, 90, 220], "uint8")


class SummaryWriter:
    """Scalars and images for one run directory."""

    def __init__(self, logdir):
        import tensorflow as tf

        self._tf = tf
        self.logdir = logdir
        self._writers = {}

    def _writer(self, run):
        if run not in self._writers:
            self._writers[run] = self._tf.summary.create_file_writer(os.path.join(self.logdir, run))
        return self._writers[run]

    def scalar(self, tag, value, step, run="train"):
        with self._writer(run).as_default():
            self._tf.summary.scalar(tag, float(value), step=int(step))

    def image(self, tag, image, step, run="eval"):
        image = np.asarray(image, "uint8")
        with self._writer(run).as_default():
            self._tf.summary.image(tag, image[None], step=int(step))

    def flush(self):
        for w in self._writers.values():
            w.flush()

    def close(self):
        for w in self._writers.values():
            w.close()
        self._writers = {}


def _bordered(img, color, width=3):
    out = img.copy()
    out[:width], out[-width:], out[:, :width], out[:, -width:] = color, color, color, color
    return out


def _fit(img, size):
    from PIL import Image

    return np.asarray(Image.fromarray(np.asarray(img, "uint8")).resize((size, size), Image.NEAREST))


def nearest_neighbour_grid(query_images, neighbour_images, correct, cell=64, gap=4):
    """One image: a row per query — the query (blue border), then its top-k
    neighbours with a green (same class) or red (other class) border.

    Args:
        query_images: uint8 (q, h, w, 3).
        neighbour_images: uint8 (q, k, h, w, 3).
        correct: bool (q, k).
    """
    q, k = np.asarray(correct).shape
    grid = np.full((q * (cell + gap) + gap, (k + 1) * (cell + gap) + gap + gap, 3), 255, "uint8")
    for i in range(q):
        y = gap + i * (cell + gap)
        grid[y : y + cell, gap : gap + cell] = _bordered(_fit(query_images[i], cell), BLUE)
        for j in range(k):
            x = 2 * gap + (j + 1) * (cell + gap)
            color = GREEN if correct[i][j] else RED
            grid[y : y + cell, x : x + cell] = _bordered(_fit(neighbour_images[i][j], cell), color)
    return grid


def _palette(n):
    hues = np.linspace(0, 1, max(n, 1), endpoint=False)
    import colorsys

    return (np.array([colorsys.hsv_to_rgb(h, 0.8, 0.85) for h in hues]) * 255).astype("uint8")


def tsne_image(embeddings, labels, size=512, max_points=1500, seed=0):
    """t-SNE (scikit-learn) of up to ``max_points`` embeddings, drawn as a
    scatter plot coloured by class (PIL; no matplotlib needed)."""
    from PIL import Image, ImageDraw
    from sklearn.manifold import TSNE

    embeddings = np.asarray(embeddings, "float64")
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    if len(embeddings) > max_points:
        rows = np.sort(rng.choice(len(embeddings), max_points, replace=False))
        embeddings, labels = embeddings[rows], labels[rows]
    n = len(embeddings)
    if n < 3:
        raise ValueError(f"t-SNE needs at least 3 points, got {n}")
    perplexity = float(min(30.0, (n - 1) / 3.0))
    xy = TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(embeddings)
    xy = (xy - xy.min(0)) / np.maximum(xy.max(0) - xy.min(0), 1e-12)
    margin = 12
    xy = margin + xy * (size - 2 * margin)
    classes = np.unique(labels)
    colors = _palette(len(classes))
    color_of = {c: tuple(int(v) for v in colors[i]) for i, c in enumerate(classes)}
    img = Image.new("RGB", (size, size), (255, 255, 255))
    draw = ImageDraw.Draw(img)
    for (x, y), c in zip(xy, labels):
        draw.ellipse([x - 3, y - 3, x + 3, y + 3], fill=color_of[c])
    return np.asarray(img)


def write_projector(run_dir, embeddings, labels, name="test_embedding"):
    """TensorBoard projector files for ``embeddings`` (TSV tensor + labels)."""
    os.makedirs(run_dir, exist_ok=True)
    np.savetxt(os.path.join(run_dir, f"{name}.tsv"), np.asarray(embeddings, "float32"), delimiter="\t", fmt="%.6g")
    with open(os.path.join(run_dir, f"{name}_metadata.tsv"), "w") as f:
        f.write("".join(f"{int(l)}\n" for l in np.asarray(labels)))
    with open(os.path.join(run_dir, "projector_config.pbtxt"), "w") as f:
        f.write(
            "embeddings {\n"
            f'  tensor_name: "{name}"\n'
            f'  tensor_path: "{name}.tsv"\n'
            f'  metadata_path: "{name}_metadata.tsv"\n'
            "}\n"
        )
