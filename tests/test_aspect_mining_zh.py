"""Chinese aspects and opinion rules: the noun-opinion pattern, longest-match opinions, negation."""

from __future__ import annotations

import pytest

from pipelines import aspect_mining, aspect_mining_zh as zh


def test_mines_nouns_before_opinions_and_grows_truncated_ones():
    sentences = (["质量很好，物流也快。", "性价比很高", "这个性价比不错", "物流太慢了"] * 6
                 + ["手机很好用", "东西不错", "感觉很好", "老公很喜欢"] * 6
                 + ["质量一般", "我看了质量报告", "越来越好"] * 3)
    lexicon = zh.mine_aspects(sentences, min_count=3, product_words=["手机"])
    names = lexicon.names
    assert set(names[:3]) == {"质量", "性价比", "物流"}, names  # "价比" grew its left neighbour
    # The product type, generic words, people and adverb phrases are no aspects.
    assert not {"手机", "东西", "感觉", "老公", "越来越", "来越"} & set(names)
    assert lexicon.term_to_aspect["性价比"] == "性价比"


@pytest.mark.parametrize("sentence, opinions", [
    ("质量很好", (1, 0)),
    ("质量不太好", (0, 1)),  # a negation across a degree adverb
    ("屏幕不是很清晰", (0, 1)),
    ("价格不贵", (1, 0)),  # its own word: "not expensive"
    ("不错", (1, 0)),  # not "不" + "错"
    ("快递今天到了", (0, 0)),  # the courier, not "fast"
    ("没有想象中好", (0, 1)),  # "没有" reaches the opinion further on
    ("没有异味", (1, 0)),
    ("好像有点慢", (0, 1)),  # "seems", not "good"
])
def test_opinions_read_by_longest_match_with_negation(sentence, opinions):
    assert zh.opinions(sentence) == opinions


@pytest.mark.parametrize("sentence, terms, praises, criticises", [
    ("质量很好，物流也快。", ["质量"], True, False),
    ("快递很快，但是包装很差", ["包装"], False, True),  # its own clause
    ("快递很快，但是包装很差", ["快递"], True, False),
    ("希望质量再好一点", ["质量"], False, False),  # a wish is neither
    ("屏幕不是很清晰", ["屏幕"], False, True),
    ("性价比不错", ["性价比"], True, False),
    ("性价比很高", ["性价比"], True, False),
    ("价格有点高", ["价格"], False, True),  # high is bad for a price
    ("价格低，质量好", ["价格"], True, False),
    ("喜欢蒙牛纯奶的新包装", ["包装"], True, False),  # liked; "new" alone is no praise
    ("首批更换新包装的产品包括纯牛奶", ["包装"], False, False),
])
def test_praise_and_criticism_read_the_clause_that_names_the_aspect(sentence, terms, praises,
                                                                    criticises):
    # Through the language-neutral entry points that `features` and `describe` call.
    assert aspect_mining.clause_praises(sentence, terms) is praises
    assert aspect_mining.clause_criticises(sentence, terms) is criticises


def test_english_text_keeps_the_english_rules():
    assert not zh.has_chinese("The battery is great.")
    assert aspect_mining.clause_praises("The battery is great.", ["battery"])
    assert zh.is_chinese_corpus(["质量很好", "Great.", "物流快"])
    assert not zh.is_chinese_corpus(["Great.", "Fine.", "物流快"])


def test_real_online_shopping_lexicon_holds_attributes_and_no_categories():
    """The lexicon `vocab` mines from the real 62,774 Chinese shopping reviews (10 categories)."""
    import csv
    import io
    import zipfile

    from tests.conftest import shared_file

    path = shared_file("chinese-sentiment-sophonplus/online_shopping_10_cats.zip")
    with zipfile.ZipFile(path) as archive:
        rows = list(csv.DictReader(io.TextIOWrapper(archive.open("online_shopping_10_cats.csv"),
                                                    "utf-8")))
    categories = {r["cat"] for r in rows}
    names = set(zh.mine_aspects([r["review"] for r in rows], product_words=categories).names)
    assert {"质量", "物流", "价格", "包装", "服务", "房间", "屏幕", "味道"} <= names, names
    assert not names & categories
    assert not names & {"东西", "感觉", "老公", "相当", "价比", "辨率"}
