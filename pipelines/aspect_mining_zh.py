"""Aspect terms and opinion rules for Chinese reviews: `aspect_mining`'s counterpart where words are
not separated by spaces.

Without a word segmenter, an aspect is found by the phrase shape Chinese reviews use for opinions:
a noun, optional degree adverbs, an opinion word ("质量很好", "物流太慢", "性价比高"). The two
characters before such an opinion are a candidate; a candidate that carries an opinion in a good
share of its occurrences is an aspect. A candidate whose left neighbour is nearly always the same
character grows by it ("价比" -> "性价比", "辨率" -> "分辨率"). People, filler words, verb phrases and
the product type itself (the reviewed items' names, "东西", "商品") are no aspects.

Opinions are read by longest match over the lexicons below, so "不错" is praise, "不好" criticism and
"快递" (courier) no opinion at all; a negation ("不", "没有", optionally with a degree adverb: "不太",
"不是很") turns the opinion that follows it.
"""

from __future__ import annotations

import functools
import re
from collections import Counter
from typing import Iterable

from pipelines import aspect_mining
from pipelines.aspect_mining import AspectLexicon

_CJK = re.compile(r"[\u4e00-\u9fff]")

POSITIVE = frozenset("""
好 不错 满意 喜欢 漂亮 清晰 流畅 快 便宜 实惠 划算 值 值得 舒服 舒适 干净 热情 周到 方便 好用 好看
好吃 好喝 精美 结实 耐用 稳定 给力 赞 棒 完美 合适 新鲜 专业 细致 耐心 及时 安静 大气 精致 香 甜 高
柔顺 顺滑 清爽 齐全 宽敞 到位 友好 准时 迅速 靠谱 负责 优惠 精彩 实用 一流 满分 可以 还行 不贵 不差
高兴 快乐 惊喜 推荐 信赖 放心 完好 正品 卫生 整洁 优秀 强大 舒心 贴心 温馨 高档 豪华 喜爱 爱 超值
物美价廉 物超所值 清楚 灵敏 细腻 光滑 充足 丰富 挺好 很好 还好 正宗 水灵 饱满 好评 顺利 省心 平整
""".split())

NEGATIVE = frozenset("""
差 不好 慢 贵 失望 垃圾 难用 难看 难吃 难喝 烂 脏 吵 破 坏 旧 假 麻烦 糟糕 一般 不行 粗糙 模糊 异味 臭
酸 涩 少 短 低 卡 烫 硬 痒 漏 差劲 恶心 后悔 坑 乱 吵闹 陈旧 简陋 拖拉 敷衍 恶劣 离谱 不值 破损 掉色
起球 褪色 缩水 变形 死机 发热 发烫 黑屏 蓝屏 退货 投诉 坑爹 太差 很差 上当 受骗 欺骗 郁闷 无语 生气
气愤 不爽 烦 坏了 破了 不满 缺货 延迟 过期 腐烂 霉 有味 刺鼻 掉渣 偏贵 太贵 小气 冷淡 无聊 老化 噪音
""".split())

# Words that contain an opinion character but say nothing about quality: the longest match takes
# them first ("快递" is the courier, not "fast"; "好像" is "seems").
NEUTRAL = frozenset("""
快递 好像 好多 只好 正好 刚好 好几 好久 恰好 好在 好些 小时 小心 小孩 小朋友 多少 不少 热水 热水器
出差 差不多 差点 黑色 卡片 信用卡 假期 放假 破解 干燥 高度 低调 新闻 一般来说 大小 好友 新手 最新
提高 高铁 高速公路 高中 高峰
还是 更新 重新 新的 好评如潮 好不好 好不容易 少量 至少 减少 坏处 爱好
""".split())

NEGATIONS = ("没有", "不如", "不是", "没", "不", "无", "未", "别", "非")
# "没有想象中好", "不如上次好": these negate an opinion further along the clause.
_LONG_NEGATIONS = frozenset({"没有", "不如"})
DEGREE = frozenset("""
很 非常 太 挺 比较 特别 真 超 蛮 十分 相当 极 极其 还 也 都 更 最 够 有点 有些 略 偏 较 真的
实在 超级 巨 贼 还算 都很 也很 还是 是 是很 怎么 那么 这么 那样 这样 又 就 好
""".split())

_LEXICON = sorted(POSITIVE | NEGATIVE | NEUTRAL | set(NEGATIONS) | DEGREE,
                  key=lambda w: (-len(w), w))
_LONGEST = max(len(w) for w in _LEXICON)
_LOOKUP = frozenset(_LEXICON)

# What splits a Chinese review into clauses: the boundaries every language shares (punctuation,
# 但是/不过/可是; `aspect_mining._CLAUSE`, also inside the text_features graph) and, for the
# miner and the praise rules only, spaces, tildes, ellipses and 然而/只是/就是, which Chinese
# reviews use between clauses ("裤子挺不错的 质量很好 大小合适").
CLAUSE = re.compile(aspect_mining._CLAUSE.pattern + r"|[\s~～…]+|然而|只是|就是")
# A wish or a condition is no statement about the item: "希望质量再好一点", "如果便宜点就好了".
_COUNTERFACTUAL = re.compile(r"希望|如果|要是|假如|但愿|建议|要不是|本以为|以为|还以为|要求")

# Characters that never sit inside an aspect noun: particles, pronouns, verbs of motion and
# result ("穿上", "装完", "越来越"), numbers.
_NOT_IN_NOUN = frozenset("的了是很也都不在有和我你他她它这那就还又而且但说着过吗呢吧啊呀哦么个一没太挺真超最更"
                         "让被把给对从到为以及与或等之其所越上去来完起得后再才令"
                         "二三四五六七八九十几")
NON_ASPECTS = frozenset("""
感觉 觉得 东西 总体 整体 总之 其他 一般 我们 他们 自己 个人 总的 来说 感到 显得 目前 现在 以前 之前
开始 时候 时间 一直 已经 确实 应该 可能 本来 原来 简直 果然 依然 仍然 居然 竟然 虽然 并且 只有
老公 老婆 孩子 宝宝 朋友 同事 家人 妈妈 爸爸 女儿 儿子 小孩 老人 客人 大家 别人 同学 老师 父母 家里
东东 商品 产品 宝贝 方面 稍微 五星 四星 三星 评价 买家 卖家 京东 当当 亚马逊 淘宝 网上 价位
""".split())


def has_chinese(text: str) -> bool:
    """Whether `text` holds Chinese characters: the rules of this module apply to it."""
    return bool(text) and _CJK.search(text) is not None


def is_chinese_corpus(sentences: Iterable[str], min_share: float = 0.5) -> bool:
    """Whether at least `min_share` of the (non-empty) sentences hold Chinese characters."""
    total = chinese = 0
    for sentence in sentences:
        if sentence and sentence.strip():
            total += 1
            chinese += has_chinese(sentence)
    return total > 0 and chinese >= min_share * total


def tokens(clause: str) -> list[str]:
    """`clause` cut into lexicon words by longest match; other characters stand alone."""
    out, i = [], 0
    while i < len(clause):
        for size in range(min(_LONGEST, len(clause) - i), 0, -1):
            piece = clause[i:i + size]
            if size == 1 or piece in _LOOKUP:
                out.append(piece)
                i += size
                break
    return out


# Price words, for which "高" (high) is criticism and "低" (low) praise: "价格高" vs "性价比高".
PRICE_WORDS = frozenset("价格 价钱 价位 费用 房价 售价 定价 运费 邮费".split())
_PRICE_FLIPS = frozenset({"高", "低"})


def opinions(clause: str, price: bool = False) -> tuple[int, int]:
    """(positive, negative) opinions in a clause; a negation followed only by degree adverbs
    turns the next opinion ("不太满意" negative), "没有"/"不如" the next one in the clause
    ("没有想象中好" negative, "没有异味" positive). With `price` (the clause names a price),
    "高" criticises and "低" praises."""
    positive = negative = 0
    negated = sticky = False
    for token in tokens(clause):
        if token in NEGATIONS:
            negated = not negated
            sticky = token in _LONG_NEGATIONS
            continue
        if token in POSITIVE or token in NEGATIVE:
            flipped = negated ^ (price and token in _PRICE_FLIPS)
            is_positive = (token in POSITIVE) ^ flipped
            positive += is_positive
            negative += not is_positive
            negated = sticky = False
        elif token not in DEGREE and not sticky:
            negated = False
    return positive, negative


def _naming_clauses(sentence: str, terms: Iterable[str]) -> list[str]:
    """The clauses of `sentence` that name one of `terms` (the whole sentence when none does)."""
    terms = [t for t in terms if t]
    clauses = [c for c in CLAUSE.split(sentence.lower()) if c.strip()]
    return [c for c in clauses if any(t in c for t in terms)] or [sentence.lower()]


def clause_praises(sentence: str, terms: Iterable[str]) -> bool:
    """Whether a reader takes `sentence` as praise of the aspect named by `terms`: each clause that
    names it holds more positive than negative opinions (a negated one counting as its opposite)
    and is a statement, not a wish or a condition."""
    terms = tuple(terms)
    for clause in _naming_clauses(sentence, terms):
        positive, negative = opinions(clause, _names_price(clause, terms))
        if negative or not positive or _COUNTERFACTUAL.search(clause):
            return False
    return True


def _names_price(clause: str, terms: tuple[str, ...]) -> bool:
    """Whether the aspect is a price and the clause names it ("价格很高": high is bad)."""
    return any(t in PRICE_WORDS and t in clause for t in terms)


def clause_criticises(sentence: str, terms: Iterable[str]) -> bool:
    """Whether a reader takes `sentence` as criticism of the aspect named by `terms`: a clause that
    names it holds at least as many negative opinions as positive ones, and some."""
    terms = tuple(terms)
    for clause in _naming_clauses(sentence, terms):
        positive, negative = opinions(clause, _names_price(clause, terms))
        if negative and negative >= positive:
            return True
    return False


@functools.lru_cache(maxsize=1)
def _opinion_pattern() -> re.Pattern:
    """Two Chinese characters, then degree adverbs or a negation, then an opinion word."""
    adverbs = "|".join(re.escape(w) for w in sorted(DEGREE | set(NEGATIONS), key=lambda w: -len(w)))
    words = "|".join(re.escape(w) for w in sorted(POSITIVE | NEGATIVE, key=lambda w: -len(w)))
    return re.compile(rf"(?=([\u4e00-\u9fff]{{2}})(?:{adverbs})*(?:{words}))")


def _is_candidate(term: str, excluded: frozenset[str]) -> bool:
    return (term[0] != term[1] and not any(c in _NOT_IN_NOUN for c in term)
            and term not in NON_ASPECTS and term not in NEUTRAL and term not in DEGREE
            and term not in POSITIVE and term not in NEGATIVE
            and not any(term in word or word in term for word in excluded))


def mine_aspects(
    sentences: Iterable[str],
    max_aspects: int = 30,
    min_count: int = 5,
    min_opinion_ratio: float = 0.15,
    min_grow_share: float = 0.6,
    product_words: Iterable[str] = (),
) -> AspectLexicon:
    """Mine up to `max_aspects` aspects from Chinese review `sentences` (see module doc).

    Kept: candidates before an opinion at least `min_count` times and in at least
    `min_opinion_ratio` of their occurrences; a candidate grows by its left neighbour (up to four
    characters) while one neighbour makes up `min_grow_share` of its occurrences. `product_words`
    (the items' names) are no aspects, nor is anything inside or around one.
    """
    excluded = frozenset(w.strip() for w in product_words if w and len(w.strip()) >= 2)
    clauses = [c for s in sentences if s for c in CLAUSE.split(s.lower()) if has_chinese(c)]
    pattern = _opinion_pattern()
    near: Counter[str] = Counter()
    for clause in clauses:
        near.update({m.group(1) for m in pattern.finditer(clause)})
    candidates = [t for t, n in near.items() if n >= min_count and _is_candidate(t, excluded)]
    text = "\n".join(clauses)
    groups: dict[str, dict] = {}
    for term in sorted(candidates, key=lambda t: (-near[t], t)):
        total = text.count(term)
        if not total or near[term] < min_opinion_ratio * total:
            continue
        name = _grow(term, text, min_grow_share)
        if not _is_candidate(name[-2:], excluded) or not _is_candidate(name[:2], excluded):
            continue
        group = groups.setdefault(name, {"name": name, "terms": [name], "count": 0})
        group["count"] += near[term]
    ordered = sorted(groups.values(), key=lambda g: (-g["count"], g["name"]))[:max_aspects]
    return AspectLexicon(ordered)


def _grow(term: str, text: str, min_share: float, longest: int = 4) -> str:
    """`term` with the left neighbour that nearly always precedes it, repeatedly ("价比" -> "性价比")."""
    while len(term) < longest:
        before = Counter(text[m.start() - 1] for m in re.finditer(re.escape(term), text)
                         if m.start() > 0)
        if not before:
            break
        char, count = before.most_common(1)[0]
        if not _CJK.match(char) or count < min_share * sum(before.values()):
            break
        term = char + term
    return term
