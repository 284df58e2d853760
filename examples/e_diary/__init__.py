"""e-diary (江別市 生涯健康アプリ): the citizen records daily habits. Login only — it asks for no
personal data, and knows the citizen by its own pairwise ``sub``."""

from examples.kit.app import Example

EXAMPLE = Example(
    app="e_diary",
    about_ja="毎日の歩数・食事・睡眠を記録します。個人データは求めません。",
    about_en="Record your daily steps, meals and sleep. No personal data is asked for.",
    diary=True,
)
