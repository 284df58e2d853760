"""The data items a consent can name (the broker's catalog ids) and what they are in W3C DPV terms.

Kept in code for now: a new item is a code change reviewed like one. ``special_care`` marks
要配慮個人情報 (APPI art. 2(3)): medical items may only flow on prior, explicit, per-item consent —
which every decision here is (no blanket grant, no default allow, every item decided by name).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class CatalogItem:
    id: str
    name_ja: str
    name_en: str
    dpv_category: str  # dpv-pd term (https://w3id.org/dpv/pd)
    special_care: bool = False


CATALOG: dict[str, CatalogItem] = {
    item.id: item
    for item in (
        CatalogItem("health.allergy", "アレルギー情報", "Allergies", "pd:HealthRecord", special_care=True),
        CatalogItem("health.medication", "服薬情報", "Medication", "pd:Prescription", special_care=True),
        CatalogItem("health.blood_pressure", "血圧", "Blood pressure", "pd:HealthRecord", special_care=True),
        CatalogItem("health.checkup", "健診結果", "Check-up results", "pd:HealthRecord", special_care=True),
        CatalogItem("resident.name", "氏名", "Name", "pd:Name"),
        CatalogItem("resident.address", "住所", "Address", "pd:PhysicalAddress"),
        CatalogItem("resident.birth_date", "生年月日", "Date of birth", "pd:BirthDate"),
        CatalogItem("resident.sex", "性別", "Sex", "pd:Gender"),
    )
}


def known(item: str) -> bool:
    return item in CATALOG


def special_care(items: list[str] | set[str]) -> bool:
    return any(CATALOG[item].special_care for item in items if item in CATALOG)
