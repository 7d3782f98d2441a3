"""Chinese product nouns and the English words of a catalog item they may stand for.

Chinese copy about an English-named item often calls it by a Chinese noun ("这款卡尺" for a dial caliper). A noun
that the item is not ("你的手电筒", a flashlight, on a dial caliper) is a made-up product: :func:`misnamed_product`
finds the first such noun, judged against the item's own words (title, display name, category, description).
Only specific product nouns are listed; generic ones (工具, 产品, 好物) and single characters (灯, 笔, 锅) are not,
so copy is never failed for a word that could name anything.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import ahocorasick

# noun -> fragments of English words, any of which in the item's own words makes the noun fit
ZH_PRODUCT_NOUNS: dict[str, tuple[str, ...]] = {
    # measuring and lab
    "游标卡尺": ("caliper",), "卡尺": ("caliper",), "千分尺": ("micrometer", "caliper"), "卷尺": ("tape", "measur"),
    "直尺": ("ruler", "rule", "straightedge"), "尺子": ("ruler", "rule", "measur", "scale"),
    "温度计": ("thermometer", "temperature"), "湿度计": ("hygrometer", "humidity"),
    "比重计": ("hydrometer", "gravity"), "折射仪": ("refractometer",), "显微镜": ("microscope",),
    "放大镜": ("magnif", "loupe", "lens"), "万用表": ("multimeter", "meter", "tester"),
    "示波器": ("oscilloscope",), "电子秤": ("scale", "balance"), "天平": ("balance", "scale"),
    "计时器": ("timer", "stopwatch"), "秒表": ("stopwatch", "timer"), "烧杯": ("beaker",),
    "烧瓶": ("flask",), "量筒": ("cylinder", "graduat"), "量杯": ("measur", "beaker", "cup"),
    "试管": ("tube",), "移液器": ("pipet", "pipettor"), "移液管": ("pipet",), "培养皿": ("petri", "dish"),
    "滤纸": ("filter",), "过滤器": ("filter", "strainer"), "漏斗": ("funnel",), "坩埚": ("crucible",),
    "研钵": ("mortar", "pestle"), "试剂": ("reagent", "solution", "chemical", "indicator"),
    "载玻片": ("slide",), "离心管": ("tube", "centrifuge"),
    # medical
    "手术刀": ("scalpel", "blade"), "止血钳": ("hemostat", "forceps", "clamp"),
    "镊子": ("tweezer", "forceps"), "注射器": ("syringe",), "针头": ("needle", "syringe"),
    "听诊器": ("stethoscope",), "绷带": ("bandage", "gauze", "dressing", "wrap"), "口罩": ("mask", "respirator"),
    "手套": ("glove",), "急救包": ("first aid", "kit"), "体温计": ("thermometer",),
    # tools
    "手电筒": ("flashlight", "torch"), "手电": ("flashlight", "torch"), "螺丝刀": ("screwdriver", "driver"),
    "扳手": ("wrench", "spanner"), "钳子": ("plier", "forceps", "hemostat", "clamp", "pincer", "tong", "cutter"),
    "锤子": ("hammer", "mallet"), "电钻": ("drill",), "钻头": ("drill", "bit"), "锯子": ("saw",),
    "剪刀": ("scissor", "shear", "snip"), "砂纸": ("sand", "abrasive", "grit"), "刷子": ("brush",),
    "烙铁": ("solder", "iron"), "焊锡": ("solder",), "胶枪": ("glue gun", "gun"), "台钳": ("vise", "vice"),
    "夹子": ("clamp", "clip", "clothespin", "forceps", "hemostat", "tweezer"), "梯子": ("ladder", "step"),
    "手推车": ("cart", "dolly", "truck", "trolley"), "工具箱": ("toolbox", "tool box", "case", "chest"),
    # parts and supplies
    "螺丝": ("screw",), "螺钉": ("screw",), "螺栓": ("bolt",), "螺母": ("nut",), "垫圈": ("washer",),
    "钉子": ("nail", "brad"), "铆钉": ("rivet",), "弹簧": ("spring",), "轴承": ("bearing",), "齿轮": ("gear",),
    "链条": ("chain",), "绳子": ("rope", "cord", "twine", "string", "line"), "扎带": ("tie", "strap", "wrap"),
    "胶带": ("tape",), "胶水": ("glue", "adhesive", "epoxy", "cement"), "磁铁": ("magnet",),
    "润滑油": ("lubricant", "oil", "grease"), "润滑剂": ("lubricant", "grease", "oil"),
    "油漆": ("paint", "coating"), "喷漆": ("paint", "spray"), "热缩管": ("shrink",),
    "管子": ("tube", "tubing", "pipe", "hose"), "水管": ("hose", "pipe", "tube"), "阀门": ("valve",),
    "水泵": ("pump",), "泵": ("pump",), "电池": ("batter", "cell"), "电线": ("wire", "cable", "cord"),
    "数据线": ("cable", "cord"), "充电器": ("charger", "charging", "power"), "插头": ("plug", "connector"),
    "插座": ("outlet", "socket", "receptacle", "plug", "strip"), "开关": ("switch",),
    "传感器": ("sensor", "probe", "detector"), "电机": ("motor",), "马达": ("motor",), "继电器": ("relay",),
    "电阻": ("resistor", "resistance"), "电容": ("capacitor",), "二极管": ("diode",), "晶体管": ("transistor",),
    "标签": ("label", "tag", "sticker"), "马克笔": ("marker",), "记号笔": ("marker",), "铅笔": ("pencil",),
    "打印机": ("printer",), "打印耗材": ("filament",), "线材": ("filament", "wire"), "脚轮": ("caster", "wheel"),
    "轮子": ("wheel", "caster"), "天线": ("antenna",),
    # cleaning and safety
    "擦拭纸": ("wipe", "wiper", "tissue"), "纸巾": ("tissue", "towel", "wipe", "napkin"),
    "抹布": ("cloth", "rag", "towel", "wipe"), "海绵": ("sponge",), "拖把": ("mop",), "扫帚": ("broom",),
    "垃圾袋": ("bag", "liner"), "护目镜": ("goggle", "glass", "eyewear", "spectacle"),
    "安全帽": ("helmet", "hard hat", "hat"), "耳塞": ("earplug", "ear plug", "plug"), "面罩": ("mask", "shield"),
    # home, kitchen, outdoor, electronics
    "灯泡": ("bulb", "lamp"), "台灯": ("lamp",), "灯串": ("string", "light"),
    "耳机": ("headphone", "earphone", "earbud", "headset"),
    "音箱": ("speaker",), "手表": ("watch",), "摄像头": ("camera", "webcam"), "相机": ("camera",),
    "显示器": ("monitor", "display"), "扫描仪": ("scanner",), "风扇": ("fan",), "加热器": ("heater",),
    "咖啡机": ("coffee", "espresso", "brewer"), "磨豆机": ("grinder",), "烤箱": ("oven",), "披萨炉": ("pizza", "oven"),
    "炉子": ("stove", "burner", "oven"), "水壶": ("kettle", "bottle", "pitcher", "jug"),
    "保温杯": ("tumbler", "bottle", "flask", "mug"), "马克杯": ("mug", "cup"),
    "杯子": ("cup", "mug", "tumbler", "glass"),
    "瓶子": ("bottle", "jar"), "砧板": ("cutting board", "board"), "菜板": ("cutting board", "board"),
    "菜刀": ("knife", "cleaver"), "平底锅": ("pan", "skillet"), "煎锅": ("pan", "skillet"), "炒锅": ("wok", "pan"),
    "帐篷": ("tent",), "睡袋": ("sleeping bag",), "背包": ("backpack", "pack", "bag"), "枕头": ("pillow",),
    "毯子": ("blanket", "throw"), "毛毯": ("blanket", "throw"), "收纳盒": ("organizer", "box", "bin", "storage"),
    "鞋子": ("shoe", "sneaker", "boot"), "跑鞋": ("shoe", "sneaker", "running"), "靴子": ("boot",),
    "衬衫": ("shirt",), "夹克": ("jacket",),
}
def _automaton() -> Any:
    automaton = ahocorasick.Automaton()
    for noun in ZH_PRODUCT_NOUNS:
        automaton.add_word(noun, len(noun))
    automaton.make_automaton()
    return automaton


_NOUNS = _automaton()


def nouns_in(text: str) -> Iterator[str]:
    """The nouns of ``text`` in order, as a pattern of them all, longest first, finds them (``finditer``): at the
    leftmost place a noun starts, the longest noun there, then the same after it; from one Aho-Corasick pass instead
    of trying every noun at every place."""
    longest: dict[int, int] = {}
    for end, size in _NOUNS.iter(text):
        start = end - size + 1
        if size > longest.get(start, 0):
            longest[start] = size
    after = 0
    for start in sorted(longest):
        if start >= after:
            after = start + longest[start]
            yield text[start:after]


def misnamed_product(text: str, own_words: Iterable[str]) -> str | None:
    """The first Chinese product noun of ``text`` that none of ``own_words`` (the item's own words, lower case)
    fits, or None. Longer nouns win where two overlap (卡尺 inside 游标卡尺)."""
    words = None
    for noun in nouns_in(text):
        words = words if words is not None else " ".join(own_words)
        if not any(f in words for f in ZH_PRODUCT_NOUNS[noun]):
            return noun
    return None
