"""Nodes of the ML application.

Preprocessing nodes are shared by training and inference (tags ``training`` and
``inference``), so a review is cleaned the same way when the model learns and when it
serves. Fitted objects (vectorizer, label encoder, classifier) are catalog datasets:
training writes them, the logged model carries them to inference.
"""

import re
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from scipy.sparse import spmatrix
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import SGDClassifier
from sklearn.metrics import accuracy_score, f1_score, log_loss, roc_auc_score
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import LabelEncoder

# ---- shared preprocessing (training and inference) ---------------------------------


def lowercase(instances: pd.DataFrame) -> pd.Series:
    """Lower-case the review texts."""
    return instances["text"].astype(str).str.lower()


def remove_stopwords(texts: pd.Series, stopwords: list[str]) -> pd.Series:
    """Remove the words of the persisted stop-word list (``data/01_raw/stopwords.yml``)."""
    pattern = r"\b(?:" + "|".join(re.escape(str(word)) for word in stopwords) + r")\b"
    return texts.str.replace(pattern, " ", regex=True)


def remove_punctuation(texts: pd.Series) -> pd.Series:
    """Replace punctuation with spaces and squeeze repeated spaces."""
    no_punctuation = texts.str.replace(r"[^\w\s]", " ", regex=True)
    return no_punctuation.str.replace(r"\s+", " ", regex=True).str.strip()


def vectorize(vectorizer: TfidfVectorizer, texts: pd.Series) -> spmatrix:
    """TF-IDF features of the cleaned texts, with the vectorizer fitted in training."""
    return vectorizer.transform(texts)


# ---- training only -----------------------------------------------------------------


def fit_vectorizer(texts: pd.Series, params: dict[str, Any]) -> TfidfVectorizer:
    """Fit the TF-IDF vocabulary on the training texts."""
    vectorizer = TfidfVectorizer(
        max_features=int(params["max_features"]),
        ngram_range=tuple(params["ngram_range"]),
        min_df=int(params["min_df"]),
    )
    return vectorizer.fit(texts)


def fit_label_encoder(labels: pd.DataFrame) -> LabelEncoder:
    """Learn the mapping between sentiment names and class numbers."""
    return LabelEncoder().fit(labels["label"])


def encode_labels(label_encoder: LabelEncoder, labels: pd.DataFrame) -> np.ndarray:
    return label_encoder.transform(labels["label"])


def split_train_valid(
    features: spmatrix, target: np.ndarray, params: dict[str, Any]
) -> tuple[spmatrix, spmatrix, np.ndarray, np.ndarray]:
    """Hold out a validation set to score the model after each epoch."""
    x_train, x_valid, y_train, y_valid = train_test_split(
        features,
        target,
        test_size=float(params["validation_size"]),
        random_state=int(params["random_state"]),
        stratify=target,
    )
    return x_train, x_valid, y_train, y_valid


def train_classifier(
    x_train: spmatrix,
    y_train: np.ndarray,
    x_valid: spmatrix,
    y_valid: np.ndarray,
    params: dict[str, Any],
) -> tuple[SGDClassifier, list[float], list[float]]:
    """Train a logistic-loss SGD classifier one epoch at a time.

    Returns:
        The classifier, and the train and validation log-loss after each epoch (the
        catalog logs both as MLflow metric histories, one step per epoch).
    """
    seed = int(params["random_state"])
    classifier = SGDClassifier(
        loss="log_loss",
        alpha=float(params["alpha"]),
        learning_rate="constant",
        eta0=float(params["learning_rate"]),
        random_state=seed,
    )
    rng = np.random.default_rng(seed)
    classes = np.unique(y_train)
    train_loss, valid_loss = [], []
    for _ in range(int(params["epochs"])):
        order = rng.permutation(x_train.shape[0])
        classifier.partial_fit(x_train[order], y_train[order], classes=classes)
        train_loss.append(float(log_loss(y_train, classifier.predict_proba(x_train))))
        valid_loss.append(float(log_loss(y_valid, classifier.predict_proba(x_valid))))
    return classifier, train_loss, valid_loss


def evaluate(
    classifier: SGDClassifier, x_valid: spmatrix, y_valid: np.ndarray
) -> dict[str, float]:
    """Accuracy, F1 and ROC AUC on the validation set."""
    predicted = classifier.predict(x_valid)
    positive_proba = classifier.predict_proba(x_valid)[:, 1]
    return {
        "accuracy": float(accuracy_score(y_valid, predicted)),
        "f1": float(f1_score(y_valid, predicted)),
        "roc_auc": float(roc_auc_score(y_valid, positive_proba)),
    }


def plot_learning_curve(
    train_loss: list[float],
    valid_loss: list[float],
    classifier: SGDClassifier,
    vectorizer: TfidfVectorizer,
    label_encoder: LabelEncoder,
) -> Figure:
    """Log-loss per epoch, and the words that weigh most for each sentiment."""
    figure = Figure(figsize=(11, 4.5), layout="constrained")
    curves, words = figure.subplots(1, 2)
    epochs = range(1, len(train_loss) + 1)
    curves.plot(epochs, train_loss, marker="o", label="train")
    curves.plot(epochs, valid_loss, marker="o", label="validation")
    curves.set(title="Learning curve", xlabel="epoch", ylabel="log-loss")
    curves.legend()

    coefficients = classifier.coef_[0]
    vocabulary = vectorizer.get_feature_names_out()
    top = np.concatenate([np.argsort(coefficients)[:8], np.argsort(coefficients)[-8:]])
    negative, positive = label_encoder.classes_[0], label_encoder.classes_[1]
    colors = ["tab:red" if coefficients[i] < 0 else "tab:green" for i in top]
    words.barh(vocabulary[top], coefficients[top], color=colors)
    words.set(
        title=f"Words pushing to '{negative}' (red) or '{positive}' (green)",
        xlabel="coefficient",
    )
    return figure


def make_held_out(instances: pd.DataFrame, labels: pd.DataFrame) -> pd.DataFrame:
    """The test reviews, their label and a length bucket (``short``, ``medium``,
    ``long``): evaluation scores the model on each bucket, so a model that only works
    on long reviews cannot pass for a good one."""
    words = instances["text"].str.split().str.len()
    length = pd.cut(words, [0, 8, 16, np.inf], labels=["short", "medium", "long"])
    return instances.assign(label=labels["label"].values, length=length.astype(str))


# ---- inference only ----------------------------------------------------------------


def predict(classifier: SGDClassifier, features: spmatrix) -> np.ndarray:
    """Class probabilities of each review."""
    return classifier.predict_proba(features)


def decode_predictions(
    label_encoder: LabelEncoder, probabilities: np.ndarray
) -> pd.DataFrame:
    """Turn probabilities into a sentiment and the model's confidence in it."""
    best = probabilities.argmax(axis=1)
    return pd.DataFrame(
        {
            "sentiment": label_encoder.inverse_transform(best),
            "confidence": probabilities.max(axis=1).round(4),
        }
    )
