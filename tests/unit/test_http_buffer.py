"""What the HTTP buffers share (buffers/http.py): reading Retry-After and servers' error bodies."""

import email.utils
import time

import requests

from buffers.http import error_detail, retry_after


def reply(status=503, headers=None, body=b""):
    response = requests.Response()
    response.status_code = status
    response.headers.update(headers or {})
    response._content = body
    return response


def test_retry_after_in_seconds_or_as_a_date():
    assert retry_after(reply(headers={"Retry-After": "120"})) == 120.0
    in_a_minute = email.utils.formatdate(time.time() + 60, usegmt=True)
    assert 55 <= retry_after(reply(headers={"Retry-After": in_a_minute})) <= 60
    past = email.utils.formatdate(time.time() - 60, usegmt=True)
    assert retry_after(reply(headers={"Retry-After": past})) == 0.0
    assert retry_after(reply(headers={"Retry-After": "soon"})) is None
    assert retry_after(reply()) is None


def test_error_detail_reads_the_usual_json_fields_else_the_text():
    assert error_detail(reply(400, body=b'{"code":"invalid","message":"unable to parse"}')) == "unable to parse"
    assert error_detail(reply(400, body=b'{"error":"partial write"}')) == "partial write"
    assert error_detail(reply(502, body=b"<html>\n  Bad   gateway\n</html>")) == "<html> Bad gateway </html>"
