"""The idp starts on the stack with its services wired (replaced by the real tests as parts land)."""

from tsunagu.idp.domain.subjects import PairwiseSubjects


async def test_idp_starts_with_its_services(idp) -> None:  # type: ignore[no-untyped-def]
    response = await idp.client.get("/healthz")
    assert response.status_code == 200, response.text
    assert isinstance(idp.services.subjects, PairwiseSubjects)


async def test_enrolled_citizen_has_an_authentication_certificate(citizen) -> None:  # type: ignore[no-untyped-def]
    assert len(citizen.user_number) == 16
    assert "BEGIN CERTIFICATE" in citizen.authentication.certificate_pem
