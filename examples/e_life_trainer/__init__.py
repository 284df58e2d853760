"""e-life trainer (江別市 生涯健康アプリ): shows the citizen's blood pressure and check-up results,
provided by the city's health records through the broker — with the citizen's consent, asked for
in the login (RFC 9396 ``authorization_details``)."""

from examples.kit.app import DataAccess, Example

EXAMPLE = Example(
    app="e_life_trainer",
    about_ja="市の健康記録から血圧と健診結果を表示し、生活改善を支援します。",
    about_en="Shows your blood pressure and check-up results from the city's health records.",
    data_access=DataAccess(
        items=["health.blood_pressure", "health.checkup"],
        purpose={"code": "health-support", "ja": "健康づくりの支援のため", "en": "To support your health"},
    ),
)
