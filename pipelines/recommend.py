"""`opinionrec recommend`: ask a TF Serving (or `opinionrec serve`) endpoint for a user's top-k.

Uses only TF Serving's REST API, so it works unchanged against stock `tensorflow_model_server`.
"""

from __future__ import annotations

import argparse
import json
import textwrap


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--user", action="append", required=True,
                        help="user id (repeat for several users)")
    parser.add_argument("-k", "--k", type=int, default=5, help="recommendations per user")
    parser.add_argument("--server", default="http://127.0.0.1:8501",
                        help="REST base URL of TF Serving (default: %(default)s)")
    parser.add_argument("--model", default="recommender", help="served model name")
    parser.add_argument("--json", action="store_true", help="print the raw JSON response")


def fetch_recommendations(server: str, users: list[str], k: int, model: str = "recommender"
                          ) -> list[dict]:
    """One dict per user: item_ids, scores, explanations, titles (top-k, seen items excluded)."""
    from serving.client import ServingClient

    client = ServingClient(server)
    response = client.predict(model, inputs={"user_id": users, "k": k},
                              signature_name="recommend")
    outputs = response["outputs"]
    return [{name: outputs[name][row] for name in outputs} for row in range(len(users))]


def format_recommendations(user: str, result: dict) -> str:
    lines = [f"\nRecommendations for user {user}:"]
    rows = zip(result["item_ids"], result["scores"], result.get("titles", []),
               result["explanations"])
    for rank, (item, score, title, explanation) in enumerate(rows, start=1):
        if not item:  # padding: the user has seen all but fewer than k items
            break
        label = f"{item} {title}".strip() if title else item
        lines.append(f"{rank:>3}. {label}  (score {score:.3f})")
        lines.extend(textwrap.wrap(explanation, width=96, initial_indent="     ",
                                   subsequent_indent="       "))
    return "\n".join(lines)


def print_recommendations(server: str, user: str, k: int, model: str = "recommender") -> dict:
    result = fetch_recommendations(server, [user], k, model)[0]
    print(format_recommendations(user, result))
    return result


def run(args: argparse.Namespace, beam_args: list[str]) -> int:
    from serving.client import ServingError

    try:
        results = fetch_recommendations(args.server, args.user, args.k, args.model)
    except ServingError as error:
        raise SystemExit(f"recommend: the server refused the request: {error}") from None
    except OSError as error:
        raise SystemExit(f"recommend: cannot reach {args.server} ({error}); "
                         "is `opinionrec serve` running?") from None
    if args.json:
        print(json.dumps(dict(zip(args.user, results)), indent=2))
        return 0
    for user, result in zip(args.user, results):
        print(format_recommendations(user, result))
    return 0
