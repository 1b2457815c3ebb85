"""Display names for untitled items: what their reviews call them, else their brand."""

import pytest


@pytest.mark.parametrize("text, expected", [
    ("I love Entertainment Weekly, great read.", {"Entertainment Weekly"}),
    ("We get Better Homes and Gardens every month.", {"Better Homes and Gardens"}),
    ("Good Housekeeping is the best.", {"Good Housekeeping"}),  # a name opening the sentence
    ("Maybe I will renew.", set()),  # "Maybe" opens the sentence, "I" is no name
    ("Great Magazine, Five Stars!", set()),  # only words that name nothing
    ("LOVE IT. It has UV protection and SPF 30.", set()),  # shouting and lone acronyms
    ("We read PC Magazine reviews.", {"PC Magazine"}),  # an acronym inside a name
    ("This Olay cream works.", {"Olay"}),  # a determiner opening the sentence
    ("Ordered it from Amazon on Monday for Christmas.", set()),
])
def test_name_phrases_are_capitalised_runs_that_could_be_names(text, expected):
    from pipelines.item_names import name_phrases

    assert name_phrases(text) == expected


def test_an_untitled_item_is_named_by_its_reviews_then_its_brand_then_not_at_all():
    from pipelines.item_names import display_names

    reviews = [
        ("a", "I read Popular Science every week."), ("a", "My son loves Popular Science."),
        ("a", "Bought it on Amazon."),
        ("b", "Got it from Amazon."), ("b", "Amazon had it cheap."),  # Amazon is everyone's
        ("c", "Amazon again."), ("c", "My wife reads Vogue."),  # Vogue once: not enough
        ("d", "I love Wired."), ("d", "Wired is great."),  # titled: its title stays
    ]
    titles = {"a": "", "b": "", "d": "Wired Magazine"}
    brands = {"b": "Bonnier Corporation", "c": ""}
    names, sources = display_names(titles, brands, reviews)
    assert names == {"a": "Popular Science (a)", "b": "Bonnier Corporation (b)", "c": "",
                     "d": "Wired Magazine"}
    assert sources == {"reviews": 1, "brand": 1, "none": 1, "title": 1}


def test_a_phrase_mostly_used_for_other_items_names_none_of_them():
    from pipelines.item_names import review_names

    reviews = [("a", "Nicer than Olay cream."), ("a", "Better than Olay, really.")]
    reviews += [("b", "This Olay cream works."), ("b", "I trust Olay."), ("b", "Got my Olay.")]
    reviews += [("c", "Softer than Olay."), ("c", "Not like Olay."), ("c", "Cheaper than Olay.")]
    names, seen = review_names(reviews)  # a: 2 of 8 uses, b: 3, c: 3
    assert names == {} and seen == {"a", "b", "c"}
    names, _ = review_names(reviews[:5])  # b: 3 of 5
    assert names == {"b": "Olay"}
