"""The web app as a tenant's staff use it, in a real browser: sign in, upload, chat, usage, invoices, Persian."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import httpx
from playwright.sync_api import expect

from tests.browser.conftest import ADMIN_KEY, Tenant
from tests.support.browser import CONTRAST_FAILURES, ConsoleWatch

ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}


def sign_in(page: Any, key: str) -> None:
    page.goto("/")
    page.get_by_label("API key").fill(key)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("navigation").get_by_role("link", name="Chat")).to_be_visible()


def shoot(page: Any, screenshots: Path | None, name: str) -> None:
    if screenshots:
        page.wait_for_load_state("networkidle")
        page.screenshot(path=str(screenshots / f"{name}.png"), full_page=True)


def test_a_wrong_key_is_refused_with_a_message_and_stays_on_sign_in(page: Any, console: ConsoleWatch) -> None:
    console.expect(r"status of 401")  # the browser logs the refused /v1/me
    page.goto("/")
    page.get_by_label("API key").fill("dc_not_a_real_key")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_contain_text("not accepted")
    expect(page.get_by_role("button", name="Sign in")).to_be_visible()
    assert page.evaluate("sessionStorage.length") == 0


def test_sign_in_keeps_the_key_in_session_storage_only_and_sign_out_clears_it(
    page: Any, tenant: Tenant, screenshots: Path | None
) -> None:
    page.goto("/")
    shoot(page, screenshots, "sign-in")
    sign_in(page, tenant.key)
    assert tenant.key not in page.url
    assert page.evaluate("Object.values(sessionStorage)") == [tenant.key]
    assert page.evaluate("Object.values(localStorage)").count(tenant.key) == 0
    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_label("API key")).to_be_visible()
    assert page.evaluate("sessionStorage.length") == 0


def test_an_uploaded_file_shows_its_percentage_while_it_uploads_then_becomes_ready(
    page: Any, tenant: Tenant, tmp_path: Path, screenshots: Path | None
) -> None:
    # Given a file of 300 kB, and a link to the storage of 150 kB/s, so the upload takes two seconds
    file = tmp_path / "handbook.md"
    file.write_text("# Handbook\n\n" + "Refunds are possible within 14 days of delivery. " * 6000)
    sign_in(page, tenant.key)
    page.get_by_role("link", name="Documents").click()
    network = page.context.new_cdp_session(page)
    network.send("Network.enable")
    network.send(
        "Network.emulateNetworkConditions",
        {"offline": False, "latency": 0, "downloadThroughput": -1, "uploadThroughput": 150_000},
    )
    shown: list[str] = []
    page.expose_function("noteProgress", lambda text: shown.append(text))
    page.evaluate(
        """() => new MutationObserver(() => document.querySelectorAll('.progress-row')
             .forEach((row) => noteProgress(row.textContent)))
             .observe(document.body, {subtree: true, childList: true, characterData: true})"""
    )
    # When it is chosen
    page.get_by_label("Upload document").set_input_files(str(file))
    # Then the percentage climbs while it uploads, and the row follows ingestion until the document is ready
    expect(page.get_by_role("status").filter(has_text="Uploading handbook.md")).to_be_visible()
    row = page.get_by_role("row").filter(has=page.get_by_role("rowheader", name="handbook.md"))
    expect(row).to_contain_text("ready", timeout=90_000)
    percents = sorted({int(m) for text in shown for m in re.findall(r"(\d+)%", text)})
    assert any(0 < p < 100 for p in percents), percents
    shoot(page, screenshots, "documents")


def test_an_unsupported_or_oversized_file_is_refused_before_anything_is_sent(
    page: Any, tenant: Tenant, tmp_path: Path
) -> None:
    sign_in(page, tenant.key)
    page.get_by_role("link", name="Documents").click()
    requests: list[str] = []
    page.on("request", lambda request: request.method != "GET" and requests.append(request.url))
    # an unsupported type
    image = tmp_path / "photo.png"
    image.write_bytes(b"\x89PNG\r\n\x1a\n")
    page.get_by_label("Upload document").set_input_files(str(image))
    expect(page.get_by_role("alert")).to_contain_text("photo.png is not a supported type")
    # a file over the limit (25 MB)
    big = tmp_path / "huge.txt"
    with big.open("wb") as out:
        out.truncate(26 * 1024 * 1024)
    page.get_by_label("Upload document").set_input_files(str(big))
    expect(page.get_by_role("alert")).to_contain_text("huge.txt is over the 25 MB limit")
    assert requests == []


def test_pasted_text_becomes_a_document_a_failed_one_shows_its_reason_and_delete_removes_it(
    page: Any, tenant: Tenant
) -> None:
    sign_in(page, tenant.key)
    page.get_by_role("link", name="Documents").click()
    page.get_by_text("Paste text as a document").click()
    page.get_by_label("Title").fill("Opening hours")
    page.get_by_label("Text").fill("The office is open from 9 to 17 on working days.")
    page.get_by_role("button", name="Add document").click()
    ready = page.get_by_role("row").filter(has=page.get_by_role("rowheader", name="Opening hours"))
    expect(ready).to_contain_text("ready", timeout=30_000)
    # A document that cannot be read fails, with the reason a person can act on
    page.get_by_label("Title").fill("Blank")
    page.get_by_label("Format").select_option("text/html")
    page.get_by_label("Text").fill("<html><head><title>x</title></head><body><script>1</script></body></html>")
    page.get_by_role("button", name="Add document").click()
    failed = page.get_by_role("row").filter(has=page.get_by_role("rowheader", name="Blank"))
    expect(failed).to_contain_text("failed:", timeout=30_000)
    # Delete asks first, then removes the row
    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Delete Opening hours").click()
    expect(ready).to_have_count(0)
    assert [row.inner_text().split("\t")[0] for row in page.get_by_role("row").all()[1:]] == ["Blank"]


POLICY = "Refunds are possible within 14 days of delivery. Shipping takes three working days within Tehran."


def ask(page: Any, question: str) -> None:
    page.get_by_label("Message").fill(question)
    page.get_by_role("button", name="Send").click()


def test_a_streamed_answer_arrives_in_pieces_and_its_citation_opens_a_preview(
    page: Any, tenant: Tenant, screenshots: Path | None
) -> None:
    # Given a document, and a model that writes a word every 40 ms
    tenant.add_text("Refund policy", POLICY)
    sign_in(page, tenant.key)
    # When a question is sent
    ask(page, "How long do I have to ask for a refund?")
    answer = page.locator(".turn.assistant .answer").last
    # Then the answer is visible while it is still being written, with Stop offered
    expect(page.get_by_role("button", name="Stop")).to_be_visible()
    expect(answer).not_to_be_empty()
    partial = answer.inner_text()
    expect(page.get_by_role("button", name="Send")).to_be_visible(timeout=30_000)
    whole = answer.inner_text()
    assert len(partial) < len(whole) and "14 days" in whole
    # And its citation is a numbered button named after the document, which opens the passage
    citation = page.get_by_role("button", name="Source 1: Refund policy")
    expect(citation).to_have_text("[1]")
    shoot(page, screenshots, "chat")
    citation.click()
    preview = page.get_by_role("dialog")
    expect(preview).to_contain_text("Refund policy")
    expect(preview).to_contain_text("within 14 days of delivery")
    shoot(page, screenshots, "citation-preview")
    page.keyboard.press("Escape")
    expect(preview).to_be_hidden()
    # And the conversation is listed, to be reopened later
    expect(
        page.get_by_role("complementary").get_by_role("button", name=re.compile("^How long do I have"))
    ).to_be_visible()


def test_stop_aborts_the_answer_and_regenerate_asks_again(page: Any, tenant: Tenant, upstream: Any) -> None:
    tenant.add_text("Refund policy", POLICY)
    upstream.chunk_delay_seconds = 0.3  # slow enough to stop half way
    sign_in(page, tenant.key)
    ask(page, "How long do I have to ask for a refund?")
    answer = page.locator(".turn.assistant .answer").last
    expect(answer).not_to_be_empty()
    page.get_by_role("button", name="Stop").click()
    expect(page.get_by_text("Stopped: this answer is not complete.")).to_be_visible()
    stopped = answer.inner_text()
    page.wait_for_timeout(800)
    assert answer.inner_text() == stopped  # nothing more arrives after Stop
    upstream.chunk_delay_seconds = 0.01
    page.get_by_role("button", name="Regenerate").click()
    expect(page.get_by_role("button", name="Send")).to_be_visible(timeout=30_000)
    expect(page.get_by_text("Stopped: this answer is not complete.")).to_have_count(0)
    expect(page.locator(".turn.assistant")).to_have_count(1)
    assert "14 days" in page.locator(".turn.assistant .answer").last.inner_text()


def test_a_stream_that_breaks_off_shows_an_error_with_retry_never_a_half_answer(
    page: Any, tenant: Tenant, upstream: Any
) -> None:
    tenant.add_text("Refund policy", POLICY)
    sign_in(page, tenant.key)
    upstream.break_next_stream(after_chunks=3, how="drop")
    ask(page, "How long do I have to ask for a refund?")
    failed = page.locator(".turn.assistant").last
    expect(failed.get_by_role("alert")).to_be_visible(timeout=30_000)
    expect(failed.locator(".answer")).to_have_count(0)  # the words that came are not left looking like an answer
    failed.get_by_role("button", name="Retry").click()
    expect(page.get_by_role("button", name="Send")).to_be_visible(timeout=30_000)
    assert "14 days" in page.locator(".turn.assistant .answer").last.inner_text()
    expect(page.get_by_role("alert")).to_have_count(0)


def test_an_unanswerable_question_shows_i_dont_know(page: Any, tenant: Tenant) -> None:
    tenant.add_text("Refund policy", POLICY)
    sign_in(page, tenant.key)
    ask(page, "What is the airspeed velocity of an unladen swallow?")
    expect(page.get_by_role("note")).to_contain_text("I don't know", timeout=30_000)


def test_an_earlier_conversation_reopens_and_can_be_deleted(page: Any, tenant: Tenant) -> None:
    tenant.add_text("Refund policy", POLICY)
    sign_in(page, tenant.key)
    ask(page, "How long does shipping take?")
    expect(page.get_by_role("button", name="Send")).to_be_visible(timeout=30_000)
    page.get_by_role("button", name="New chat").click()
    expect(page.locator(".turn")).to_have_count(0)
    listed = page.get_by_role("complementary").get_by_role("button", name=re.compile("^How long does shipping"))
    listed.click()
    expect(page.locator(".turn.user")).to_have_text(re.compile("How long does shipping take"))
    expect(page.locator(".turn.assistant")).to_contain_text("three working days")
    page.get_by_role("button", name=re.compile("Delete conversation: How long does shipping")).click()
    expect(listed).to_have_count(0)
    expect(page.locator(".turn")).to_have_count(0)


HOSTILE = (
    "Warranty terms. <script>window.__pwned = 'script'</script> <img src=x onerror=\"window.__pwned='img'\"> "
    "<b onmouseover=\"window.__pwned='hover'\">bold</b> The warranty lasts two years."
)


def test_html_and_script_in_a_document_or_an_answer_never_run(page: Any, tenant: Tenant, upstream: Any) -> None:
    # Given a document full of markup, and a model whose answer carries markup and a javascript: link
    tenant.add_text("Warranty <i>terms</i>", HOSTILE)
    upstream.responder = lambda messages: (
        "**The warranty lasts two years** [1]. <script>window.__pwned='answer'</script>"
        "<img src=x onerror=\"window.__pwned='answer-img'\"> [details](javascript:window.__pwned='link') "
        "[vendor](https://vendor.example/warranty)"
    )
    sign_in(page, tenant.key)
    ask(page, "How long does the warranty last?")
    expect(page.get_by_role("button", name="Send")).to_be_visible(timeout=30_000)
    answer = page.locator(".turn.assistant .answer").last
    # Then markdown is rendered, and nothing of the markup runs or survives as elements
    expect(answer.locator("strong")).to_have_text("The warranty lasts two years")
    assert answer.locator("script, img, [onerror], [onmouseover]").count() == 0
    link = answer.get_by_role("link", name="vendor")
    assert link.get_attribute("rel") == "noopener noreferrer"
    assert answer.locator("a[href^='javascript']").count() == 0
    # And the document's markup shows as text in its citation's preview
    page.get_by_role("button", name="Source 1: Warranty <i>terms</i>", exact=True).click()
    preview = page.get_by_role("dialog")
    expect(preview).to_contain_text("<script>window.__pwned = 'script'</script>")
    assert preview.locator("script, img, b, i").count() == 0
    page.locator(".answer strong").last.hover(force=True)
    assert page.evaluate("window.__pwned ?? null") is None


def chat_and_meter(tenant: Tenant) -> dict[str, Any]:
    """One answered question, once metering has counted it; returns the usage the API reports."""
    reply = httpx.post(
        f"{tenant.url}/v1/chat", json={"message": "How long does shipping take?"}, headers=tenant.auth, timeout=60
    )
    reply.raise_for_status()
    for _ in range(150):
        usage = httpx.get(f"{tenant.url}/v1/usage", headers=tenant.auth, timeout=30).json()
        if usage["total_tokens"] >= reply.json()["usage"]["total_tokens"]:
            return dict(usage)
        time.sleep(0.2)
    raise AssertionError("metering did not catch up")


def test_usage_is_a_chart_of_tokens_per_day_with_the_budget(
    page: Any, tenant: Tenant, screenshots: Path | None
) -> None:
    tenant.add_text("Refund policy", POLICY)
    httpx.patch(
        f"{tenant.url}/v1/admin/tenants/{tenant.tenant_id}",
        json={"limits": {"monthly_token_budget": 100_000}},
        headers=ADMIN,
        timeout=30,
    ).raise_for_status()
    usage = chat_and_meter(tenant)
    sign_in(page, tenant.key)
    page.get_by_role("link", name="Usage").click()
    chart = page.get_by_role("img", name=re.compile("Bar chart of"))
    expect(chart).to_be_visible()
    assert chart.locator("rect").count() >= 1
    expect(chart).to_have_attribute("aria-label", re.compile(f"of {usage['total_tokens']:,} tokens"))
    expect(page.locator(".legend")).to_contain_text("gpt-4o-mini")
    expect(page.get_by_label(re.compile("Monthly token budget"))).to_be_visible()
    expect(page.locator(".budget")).to_contain_text("of 100,000 used")
    shoot(page, screenshots, "usage")


def bill_today(tenant: Tenant) -> None:
    usage = chat_and_meter(tenant)
    day = usage["days"][0]["day"]
    httpx.post(f"{tenant.url}/v1/admin/billing/run", json={"date": day}, headers=ADMIN, timeout=60).raise_for_status()


def test_invoices_show_their_lines_status_and_payment_link(page: Any, tenant: Tenant, screenshots: Path | None) -> None:
    tenant.add_text("Refund policy", POLICY)
    bill_today(tenant)
    sign_in(page, tenant.key)
    page.get_by_role("link", name="Invoices").click()
    invoice = page.locator(".invoice").first
    expect(invoice).to_contain_text("Tomans")
    expect(invoice).to_contain_text("open")
    pay = invoice.get_by_role("link", name="Pay with Zibal")
    assert pay.get_attribute("rel") == "noopener noreferrer"
    assert (pay.get_attribute("href") or "").startswith("http://127.0.0.1:")
    invoice.get_by_text(re.compile("^Lines")).click()
    # a line for the chat's model, and one for the embedding of the document and the question
    expect(invoice.get_by_role("row").filter(has_text="gpt-4o-mini")).to_have_count(1)
    expect(invoice.get_by_role("row").filter(has_text="minilm")).to_have_count(1)
    shoot(page, screenshots, "invoices")


def test_in_persian_the_page_is_right_to_left_with_persian_digits_and_tomans(
    page: Any, tenant: Tenant, screenshots: Path | None
) -> None:
    tenant.add_text("Refund policy", POLICY)
    bill_today(tenant)
    sign_in(page, tenant.key)
    page.get_by_role("button", name="فارسی").click()
    assert page.evaluate("[document.documentElement.dir, document.documentElement.lang]") == ["rtl", "fa"]
    navigation = page.get_by_role("navigation")
    expect(navigation.get_by_role("link", name="صورت‌حساب‌ها")).to_be_visible()
    navigation.get_by_role("link", name="صورت‌حساب‌ها").click()
    amount = page.locator(".invoice .amount").first
    expect(amount).to_have_text(re.compile("^[۰-۹٬]+ تومان$"))
    navigation.get_by_role("link", name="مصرف").click()
    expect(page.locator(".usage")).to_contain_text("کل توکن‌ها")
    assert re.search("[۰-۹]", page.locator(".usage").inner_text())
    assert not re.search("[0-9]", page.locator(".usage p").first.inner_text())
    shoot(page, screenshots, "usage-fa")
    navigation.get_by_role("link", name="گفتگو").click()
    expect(page.get_by_role("complementary")).to_contain_text("How long does shipping take?")
    shoot(page, screenshots, "chat-fa")
    # The choice is kept, and English brings the page back to left-to-right
    page.reload()
    assert page.evaluate("document.documentElement.dir") == "rtl"
    page.get_by_role("button", name="English").click()
    assert page.evaluate("[document.documentElement.dir, document.documentElement.lang]") == ["ltr", "en"]


def test_a_revoked_key_ends_the_session_and_returns_to_sign_in(
    page: Any, tenant: Tenant, console: ConsoleWatch
) -> None:
    console.expect(r"status of 401")
    sign_in(page, tenant.key)
    keys = httpx.get(f"{tenant.url}/v1/admin/tenants/{tenant.tenant_id}/keys", headers=ADMIN, timeout=30).json()
    for key in keys["keys"]:
        httpx.delete(
            f"{tenant.url}/v1/admin/tenants/{tenant.tenant_id}/keys/{key['key_id']}", headers=ADMIN, timeout=30
        ).raise_for_status()
    page.get_by_role("link", name="Documents").click()
    expect(page.get_by_role("status")).to_contain_text("Your session has ended")
    expect(page.get_by_label("API key")).to_be_visible()
    assert page.evaluate("sessionStorage.length") == 0


def test_keyboard_alone_signs_in_moves_between_views_and_sends(page: Any, tenant: Tenant) -> None:
    tenant.add_text("Refund policy", POLICY)
    page.goto("/")
    page.get_by_label("API key").focus()
    page.keyboard.type(tenant.key)
    page.keyboard.press("Enter")
    documents = page.get_by_role("navigation").get_by_role("link", name="Documents")
    expect(documents).to_be_visible()
    documents.focus()
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", name="Documents")).to_be_visible()
    page.get_by_role("navigation").get_by_role("link", name="Chat").focus()
    page.keyboard.press("Enter")
    page.get_by_label("Message").focus()
    page.keyboard.type("How long does shipping take?")
    page.keyboard.press("Enter")
    expect(page.locator(".turn.assistant .answer").last).to_contain_text("three working days", timeout=30_000)
    # Every control can be reached with Tab, and shows where the focus is
    focused = set()
    for _ in range(25):
        page.keyboard.press("Tab")
        focused.add(page.evaluate("document.activeElement.textContent.trim() || document.activeElement.id"))
    assert {"Chat", "Documents", "Usage", "Invoices", "Sign out", "New chat", "message"} <= focused


def test_every_view_passes_colour_contrast_in_both_languages(page: Any, tenant: Tenant) -> None:
    tenant.add_text("Refund policy", POLICY)
    bill_today(tenant)
    page.goto("/")
    assert page.evaluate(CONTRAST_FAILURES) == []
    sign_in(page, tenant.key)
    ask(page, "How long does shipping take?")
    expect(page.get_by_role("button", name="Send")).to_be_visible(timeout=30_000)
    for language in ("English", "فارسی"):
        page.get_by_role("button", name=language).click()
        for view in range(4):
            page.get_by_role("navigation").get_by_role("link").nth(view).click()
            page.wait_for_load_state("networkidle")
            assert page.evaluate(CONTRAST_FAILURES) == [], (language, view)
