"""A bank (北海道みらい銀行): keeps the customer's registered address current — told by the broker
when the citizen moves (J-LIS → jlis-sync → push), if the citizen allows it."""

from examples.kit.app import DataAccess, Example

EXAMPLE = Example(
    app="bank",
    about_ja="お引っ越しの際、住所変更の手続きは不要です(ご同意いただいた場合)。",
    about_en="When you move, no change-of-address form is needed (if you allow it).",
    data_access=DataAccess(
        items=["resident.address"],
        purpose={
            "code": "kyc",
            "ja": "届出住所の確認・更新のため",
            "en": "To keep your registered address current",
        },
        pull=False,
        subscribe=True,
    ),
)
