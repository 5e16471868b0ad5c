"""The export-time validation grid: mixed lengths, padded batches, long inputs, non-English, empty."""

from __future__ import annotations

_ENGLISH = [
    "A man is playing a guitar.",
    "The quick brown fox jumps over the lazy dog.",
    "How do I reset my password if I no longer have access to my email account?",
    "Embeddings map text to vectors so that similar meanings end up close together.",
    "Stocks rallied on Tuesday after the central bank signalled a pause in rate increases.",
    "Photosynthesis converts light energy into chemical energy stored in glucose.",
    "I'd like a table for two at 7:30pm, please — by the window if possible!",
    "ERROR 503: upstream connect error or disconnect/reset before headers (retry in 30s).",
    "def encode(texts): return [model(t) for t in texts]  # naive loop",
    "Visit https://example.com/a/b?c=1&d=2 for the 2024 report (PDF, 3.2 MB).",
    "yes",
    "THE CAPITALISED HEADLINE OF A VERY LOUD NEWSPAPER",
]

_OTHER_LANGUAGES = [
    "대한민국은 민주공화국이다.",
    "모든 국민은 인간으로서의 존엄과 가치를 가지며, 행복을 추구할 권리를 가진다.",
    "오늘 날씨가 정말 좋네요. 공원에 산책하러 갈까요?",
    "이 법은 공포한 날부터 시행한다. 다만, 제3조의 개정규정은 공포 후 6개월이 경과한 날부터 시행한다.",
    "東京は日本の首都であり、世界有数の大都市です。",
    "机器学习是人工智能的一个分支。",
    "Привет, как дела? Это тестовое предложение.",
    "القط يجلس على السجادة.",
    "Ça coûte 12,50 € — très cher pour un café crème.",
    "Müller's Straße ist schön.",
]

_ODD = [
    "",
    " ",
    "   leading and trailing spaces   ",
    "🙂🚀🔥 emoji only 👍🏽👨‍👩‍👧",
    "!!!???...",
    "1234567890 3.14159 2.71828",
    "a",
    "tab\tseparated\tvalues\nand a newline",
]

_PARAGRAPH = (
    "The history of computing is longer than the history of computing hardware and modern computing "
    "technology and includes the history of methods intended for pen and paper or for chalk and slate, "
    "with or without the aid of tables. Digital computing is intimately tied to the representation of "
    "numbers. But long before abstractions like the number arose, there were mathematical concepts to "
    "serve the purposes of civilization. "
)

_KOREAN_PARAGRAPH = (
    "국회는 국민의 보통·평등·직접·비밀선거에 의하여 선출된 국회의원으로 구성한다. "
    "국회의원의 수는 법률로 정하되, 200인 이상으로 한다. 국회의원의 선거구와 비례대표제 기타 "
    "선거에 관한 사항은 법률로 정한다. "
)


# Everyday Korean (weather, shopping, transport, news, software messages) for the int8 calibration:
# a script the English vocabularies cut into many pieces, whose activations an English-only
# calibration under-samples. Written for this list; not in the validation grid or any benchmark set.
_CALIBRATION_KOREAN = [
    "내일 아침에는 전국적으로 비가 내리겠고, 오후부터 차차 개겠습니다.",
    "이 식당은 김치찌개가 맛있기로 유명해서 점심시간마다 줄이 길어요.",
    "새로 나온 스마트폰은 배터리가 하루 종일 가고 카메라 성능도 좋아졌다.",
    "주문하신 상품은 내일 오후 세 시 이전에 도착할 예정입니다.",
    "비밀번호를 다섯 번 이상 잘못 입력하면 계정이 잠깁니다.",
    "서울에서 부산까지 KTX로 두 시간 반 정도 걸립니다.",
    "감기에 걸렸을 때는 충분히 쉬고 물을 많이 마시는 것이 좋다.",
    "우리 팀은 어제 경기에서 3대 1로 역전승을 거두었다.",
    "환율이 오르면서 수입 물가가 크게 상승할 것으로 전망된다.",
    "이 강의에서는 파이썬으로 데이터를 분석하는 방법을 배웁니다.",
    "혹시 근처에 약국이 어디 있는지 아세요?",
    "회의는 다음 주 화요일 오전 10시로 변경되었습니다.",
    "아이들은 방학 동안 할머니 댁에서 시간을 보냈다.",
    "반품을 원하시면 구매일로부터 7일 이내에 신청해 주세요.",
    "인공지능 기술은 의료 영상 분석 분야에서 빠르게 발전하고 있다.",
    "지하철 2호선이 신호 장애로 운행이 지연되고 있습니다.",
    "오랜만에 친구들과 한강 공원에서 치킨을 먹었어요.",
    "정부는 내년부터 청년 주거 지원 예산을 두 배로 늘리기로 했다.",
    "이 책은 조선 시대 서민들의 생활을 생생하게 그려 낸다.",
    "서버 응답 시간이 평소보다 길어져서 원인을 조사하고 있습니다.",
    "커피 한 잔 주세요. 얼음은 조금만 넣어 주시고요.",
    "올해 여름은 평년보다 덥고 습할 것으로 예상됩니다.",
    "그 영화는 반전이 너무 많아서 끝까지 긴장을 놓을 수 없었다.",
    "회원 가입을 하시면 첫 구매 시 10% 할인 쿠폰을 드립니다.",
    "등산로가 미끄러우니 안전에 각별히 유의하시기 바랍니다.",
    "저는 매일 아침 30분씩 조깅을 하고 출근합니다.",
    "새 프로젝트의 마감일이 다가오면서 모두가 야근을 하고 있다.",
    "이 제품은 방수 기능이 있어 비 오는 날에도 사용할 수 있습니다.",
    "병원 예약은 전화나 홈페이지에서 하실 수 있습니다.",
    "도서관은 매주 월요일과 공휴일에 문을 닫습니다.",
    "한국어를 배우는 외국인 학생들이 해마다 늘고 있다.",
    "결제 오류가 발생했습니다. 잠시 후 다시 시도해 주세요.",
    "가을이 되면 설악산의 단풍을 보러 많은 사람들이 찾아온다.",
    "이번 업데이트로 앱의 실행 속도가 두 배 빨라졌습니다.",
    "엄마는 부엌에서 된장국을 끓이고 계셨다.",
    "주식 시장은 금리 인하 기대감에 힘입어 사흘째 상승했다.",
    "택배 기사님이 문 앞에 상자를 두고 가셨어요.",
    "전기차 충전소가 부족하다는 지적이 계속 나오고 있다.",
    "제주도 여행 일정은 3박 4일로 잡았습니다.",
    "이 문제를 해결하려면 먼저 로그 파일을 확인해야 합니다.",
    "아버지는 은퇴 후에 시골에서 농사를 짓고 계신다.",
    "온라인 수업은 녹화본으로도 다시 볼 수 있어요.",
    "다음 역은 시청, 시청역입니다. 내리실 문은 오른쪽입니다.",
    "배가 너무 고파서 라면을 두 개나 끓여 먹었다.",
    "연구진은 새로운 항암 물질을 발견했다고 발표했다.",
    "고객님의 소중한 의견에 감사드립니다.",
    "비행기가 기상 악화로 한 시간 늦게 출발했다.",
    "우리 회사는 재택근무를 주 이틀까지 허용하고 있다.",
]

# One or two everyday sentences in each of a dozen more languages and scripts, for the same reason.
_CALIBRATION_OTHER = [
    "明日の会議は午後二時から始まります。",
    "この店のラーメンはとても美味しいです。",
    "我们明天早上八点在火车站见面。",
    "这个软件可以帮助你管理日常任务。",
    "Завтра будет солнечно и тепло.",
    "Я забыл свой пароль от почты.",
    "El tren sale a las nueve de la mañana.",
    "¿Dónde está la biblioteca más cercana?",
    "Le musée est fermé le lundi.",
    "Ich habe heute keine Zeit, vielleicht morgen.",
    "O tempo hoje está ótimo para uma caminhada.",
    "Questo ristorante serve la migliore pizza della città.",
    "Bugün hava çok güzel, parka gidelim mi?",
    "Hôm nay trời đẹp quá, chúng ta đi dạo nhé.",
    "वह हर सुबह योग करता है।",
    "ฉันชอบกินข้าวผัดมาก",
]


def validation_texts() -> list[str]:
    """About 45 texts; the long ones run past any max_seq_length up to 512 tokens."""
    long_texts = [
        _PARAGRAPH,  # ~80 tokens
        _PARAGRAPH * 2,  # ~160: between 128 and 256
        _PARAGRAPH * 3,  # ~240
        _PARAGRAPH * 4,  # ~320: past 256
        _PARAGRAPH * 12,  # far past 512
        _KOREAN_PARAGRAPH * 3,
        _KOREAN_PARAGRAPH * 10,
        " ".join(_ENGLISH) + " " + " ".join(_OTHER_LANGUAGES),
    ]
    return _ENGLISH + _OTHER_LANGUAGES + _ODD + long_texts


def calibration_extra() -> list[str]:
    """Everyday sentences in Korean and a dozen other languages that the int8 calibration adds to
    the validation grid and the English texts (measured: 19-25% less int8 error on Korean text
    with the default recipe, English level; benchmarks/results/NOTES.md)."""
    return _CALIBRATION_KOREAN + _CALIBRATION_OTHER
