from tests.conftest import shown_key


def test_signup_create_and_verify(auth, client):
    assert auth.signup("bob@example.com").status_code == 302
    response = auth.create_key("ci")
    assert response.status_code == 200, response.get_data(as_text=True)
    value = shown_key(response.get_data(as_text=True))
    assert value and value.startswith("kv_")
    verify = client.post("/api/verify/", json={"key": value},
                         headers={"Authorization": f"Bearer {value}"})
    assert verify.json["active"] is True
