"""The mined aspect lexicon recovers the aspects a corpus talks about."""

from pipelines.aspect_mining import mine_aspects
from tests.conftest import make_review_corpus


def test_mines_planted_aspects_and_groups_their_forms():
    sentences = [s for doc in make_review_corpus(500) for s in doc]
    lexicon = mine_aspects(sentences, min_count=5)
    names = set(lexicon.names)
    assert {"battery", "sound", "price"} <= names
    # Filler nouns never carry opinions, so they are not aspects.
    assert not names & {"tuesday", "son", "school", "months"}
    assert lexicon.term_to_aspect["battery life"] == "battery"


def test_plurals_fold_into_singular_and_verbs_are_dropped():
    sentences = (["The card is great."] * 10 + ["These cards are great."] * 6
                 + ["It works great and I love it."] * 20)
    lexicon = mine_aspects(sentences, min_count=3)
    assert lexicon.names == ["card"]
    assert set(lexicon.aspects[0]["terms"]) == {"card", "cards"}


def test_round_trips_through_json():
    from pipelines.aspect_mining import AspectLexicon

    lexicon = mine_aspects([s for d in make_review_corpus(200) for s in d], min_count=3)
    assert AspectLexicon.from_json(lexicon.to_json()).aspects == lexicon.aspects
