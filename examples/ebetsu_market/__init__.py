"""Ebetsu market (江別マルシェ): a shop that would like the citizen's address for deliveries, and
to be told when it changes — only if the citizen allows it."""

from examples.kit.app import DataAccess, Example

EXAMPLE = Example(
    app="ebetsu_market",
    about_ja="地元の野菜をお届けします。配送先として住所の提供をお願いしています。",
    about_en="Local vegetables delivered. We ask for your address as the delivery address.",
    data_access=DataAccess(
        items=["resident.address"],
        purpose={"code": "delivery", "ja": "商品の配送のため", "en": "To deliver your orders"},
        pull=False,
        subscribe=True,
    ),
)
