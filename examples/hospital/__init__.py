"""A hospital (A病院 / B病院 — the same app, two registrations): reads the citizen's allergies from
the city's health records through the broker, for treatment, with the citizen's consent."""

from examples.kit.app import DataAccess, Example

EXAMPLE = Example(
    app="hospital",
    about_ja="診療の前に、市の健康記録からアレルギー情報を確認します。",
    about_en="Before treatment we check your allergies in the city's health records.",
    data_access=DataAccess(
        items=["health.allergy"],
        purpose={"code": "treatment", "ja": "診療のため", "en": "For treatment"},
    ),
)
