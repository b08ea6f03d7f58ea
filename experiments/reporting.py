"""What a run reports: test embeddings and metrics, TensorBoard images, the results table."""

import json
import os

import numpy as np


def jsonable(obj):
    """``obj`` with numpy values turned into JSON ones."""
    return json.loads(json.dumps(obj, default=lambda o: o.tolist() if hasattr(o, "tolist") else str(o)))


def eval_data(source, batch_size):
    """The test split as :class:`symm_keras.callbacks.RetrievalEvaluation` takes it."""
    if hasattr(source, "eval_arrays"):
        return source.eval_arrays()
    return source.eval_dataset(batch_size=batch_size)


def embed(model, source, batch_size):
    """``(embeddings, labels)`` of ``source``'s evaluation split (float32), as the trainer evaluates it."""
    from symm_keras.callbacks import RetrievalEvaluation

    evaluation = RetrievalEvaluation(eval_data(source, batch_size), batch_size=batch_size)
    evaluation.set_model(model)
    embeddings, labels = evaluation.embed()
    return np.asarray(embeddings, "float32"), np.asarray(labels)


def evaluate(model, source, recall_ks, batch_size, seed):
    """Embed the test split and compute every retrieval/clustering metric:
    ``(metrics, embeddings, labels, evaluation settings)``."""
    from symm_keras.evaluation import evaluate_embeddings

    embeddings, labels = embed(model, source, batch_size)
    result = evaluate_embeddings(embeddings, labels, recall_ks=recall_ks, seed=seed)
    return result.as_dict(), embeddings, labels, jsonable(result.metadata())


def write_visuals(writer, logdir, source, embeddings, labels, step, nn_queries, nn_k, tsne_points, seed):
    """Projector files, nearest-neighbour grid and t-SNE image of the test embedding."""
    from experiments import summaries

    summaries.write_projector(os.path.join(logdir, "eval"), embeddings, labels)
    rng = np.random.default_rng(seed)
    if nn_queries > 0 and nn_k > 0 and len(labels) > nn_k:
        queries = np.sort(rng.choice(len(labels), size=min(nn_queries, len(labels)), replace=False))
        e = embeddings / np.maximum(np.linalg.norm(embeddings, axis=1, keepdims=True), 1e-12)
        sims = e[queries] @ e.T
        sims[np.arange(len(queries)), queries] = -np.inf
        neighbours = np.argsort(-sims, axis=1, kind="stable")[:, :nn_k]
        correct = labels[neighbours] == labels[queries][:, None]
        query_images = source.thumbnails(queries)
        neighbour_images = source.thumbnails(neighbours.reshape(-1))
        grid = summaries.nearest_neighbour_grid(
            query_images, neighbour_images.reshape((len(queries), nn_k) + query_images.shape[1:]), correct
        )
        writer.image("nearest_neighbours", grid, step)
    if tsne_points > 0 and len(labels) >= 3:
        writer.image("tsne", summaries.tsne_image(embeddings, labels, max_points=tsne_points, seed=seed), step)


def results_table(cfg, metrics, recall_ks):
    """Markdown table: our metrics (%) next to the paper's for the row; ``metrics``: the reported
    evaluation (the last one, or the best Recall@1 one, as the row's ``reported_result`` says)."""
    keys = ["nmi", "f1"] + [f"recall@{k}" for k in recall_ks] + ["map@r"]
    paper = cfg.paper_results or {}
    title = f"{cfg.row or cfg.method} — {cfg.dataset}" + (f" ({cfg.paper} {cfg.table})" if cfg.table else "")
    if "step" in metrics:
        title += f", {cfg.reported_result} evaluation (step {metrics['step']})"
    lines = [f"### {title}", "", "| metric | ours (%) | paper (%) |", "| --- | ---: | ---: |"]
    for key in keys:
        ours = metrics.get(key)
        ours_s = f"{100 * ours:.1f}" if ours is not None else "—"
        theirs = paper.get(key)
        lines.append(f"| {key} | {ours_s} | {theirs if theirs is not None else '—'} |")
    return "\n".join(lines) + "\n"
