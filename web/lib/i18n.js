// The app's words in English and Persian, and numbers, dates and amounts in the chosen language.
// Persian: right to left, Persian digits, the Persian calendar (Intl's fa-IR), amounts in Tomans.

const STRINGS = {
  en: {
    appName: "DocuChat",
    apiKey: "API key",
    apiKeyHint: "Your tenant's API key, or a token from your identity provider.",
    signIn: "Sign in",
    signOut: "Sign out",
    signingIn: "Signing in…",
    wrongKey: "That key was not accepted. Check it and try again.",
    sessionEnded: "Your session has ended. Sign in again.",
    unreachable: "The service could not be reached. Try again in a moment.",
    navigation: "Main",
    chat: "Chat",
    documents: "Documents",
    usage: "Usage",
    invoices: "Invoices",
    language: "Language",
    // chat
    conversations: "Conversations",
    newChat: "New chat",
    noConversations: "No conversations yet.",
    deleteConversation: "Delete conversation",
    message: "Message",
    messagePlaceholder: "Ask about your documents…",
    send: "Send",
    stop: "Stop",
    regenerate: "Regenerate",
    retry: "Retry",
    you: "You",
    assistant: "DocuChat",
    useDocuments: "Answer from my documents",
    stopped: "Stopped: this answer is not complete.",
    dropped: "The answer was cut off before it was complete.",
    citations: "Sources",
    citationOf: (n, title) => `Source ${n}: ${title}`,
    page: "Page",
    close: "Close",
    routeNotFound: "I don't know: no passage of your documents answers this.",
    routeDegraded: "Degraded: the model did not answer, so this is quoted from your documents.",
    routeEscalated: "Escalated: this question went to a person, who will follow up.",
    extractive: "No model is configured: answers are quoted from your documents by the built-in extractive responder.",
    emptyChat: "Ask a question about your documents.",
    // documents
    uploadDocument: "Upload document",
    uploadHint: (max) => `txt, md, html or pdf, up to ${max}.`,
    uploading: (name, percent) => `Uploading ${name}: ${percent}%`,
    unsupportedType: (name) => `${name} is not a supported type: use txt, md, html or pdf.`,
    tooLarge: (name, max) => `${name} is over the ${max} limit.`,
    emptyFile: (name) => `${name} is empty.`,
    pasteText: "Paste text as a document",
    title: "Title",
    text: "Text",
    format: "Format",
    addDocument: "Add document",
    noDocuments: "No documents yet. Upload one, or paste text.",
    status: "Status",
    type: "Type",
    chunks: "Chunks",
    added: "Added",
    actions: "Actions",
    delete: "Delete",
    deleteDocument: (title) => `Delete ${title}`,
    confirmDelete: (title) => `Delete “${title}”? Answers will no longer use it.`,
    statuses: { pending: "pending", processing: "processing", ready: "ready", failed: "failed", deleting: "deleting" },
    stages: { parsing: "reading", embedding: "embedding", indexing: "indexing" },
    // usage
    from: "From",
    to: "To",
    show: "Show",
    tokensPerDay: "Tokens per day, by model",
    totalTokens: "Total tokens",
    noUsage: "No usage in this period.",
    day: "Day",
    model: "Model",
    inputTokens: "Input",
    outputTokens: "Output",
    tokens: "Tokens",
    budget: "Monthly token budget",
    budgetUnlimited: "No monthly budget: usage is unlimited.",
    budgetLine: (used, limit, reserved, remaining) =>
      `${used} of ${limit} used, ${reserved} reserved by calls in progress, ${remaining} left.`,
    chartLabel: (total, days) => `Bar chart of ${total} tokens over ${days} days.`,
    // invoices
    noInvoices: "No invoices yet.",
    period: "Day",
    amount: "Amount",
    pay: "Pay with Zibal",
    lines: "Lines",
    kind: "Kind",
    price: "Price per 1k tokens",
    invoiceStatus: { open: "open", paid: "paid", payment_failed: "payment failed", nothing_due: "nothing due" },
    tomans: "Tomans",
    loading: "Loading…",
    loadMore: "Load more",
    forbidden: "This key may not do that.",
  },
  fa: {
    appName: "داکیوچت",
    apiKey: "کلید API",
    apiKeyHint: "کلید API سازمان شما، یا توکنی از سامانهٔ هویت شما.",
    signIn: "ورود",
    signOut: "خروج",
    signingIn: "در حال ورود…",
    wrongKey: "این کلید پذیرفته نشد. آن را بررسی کنید و دوباره بکوشید.",
    sessionEnded: "نشست شما پایان یافت. دوباره وارد شوید.",
    unreachable: "سرویس در دسترس نیست. کمی بعد دوباره بکوشید.",
    navigation: "اصلی",
    chat: "گفتگو",
    documents: "اسناد",
    usage: "مصرف",
    invoices: "صورت‌حساب‌ها",
    language: "زبان",
    conversations: "گفتگوها",
    newChat: "گفتگوی تازه",
    noConversations: "هنوز گفتگویی نیست.",
    deleteConversation: "حذف گفتگو",
    message: "پیام",
    messagePlaceholder: "دربارهٔ اسنادتان بپرسید…",
    send: "ارسال",
    stop: "توقف",
    regenerate: "پاسخ دوباره",
    retry: "تلاش دوباره",
    you: "شما",
    assistant: "داکیوچت",
    useDocuments: "پاسخ از اسناد من",
    stopped: "متوقف شد: این پاسخ کامل نیست.",
    dropped: "پاسخ پیش از کامل شدن قطع شد.",
    citations: "منابع",
    citationOf: (n, title) => `منبع ${n}: ${title}`,
    page: "صفحه",
    close: "بستن",
    routeNotFound: "نمی‌دانم: هیچ بخشی از اسناد شما به این پاسخ نمی‌دهد.",
    routeDegraded: "پاسخ محدود: مدل پاسخ نداد، پس این از اسناد شما نقل شده است.",
    routeEscalated: "ارجاع شد: این پرسش به یک همکار سپرده شد که پیگیری می‌کند.",
    extractive: "مدلی پیکربندی نشده است: پاسخ‌ها را پاسخ‌دهندهٔ استخراجی داخلی از اسناد شما نقل می‌کند.",
    emptyChat: "پرسشی دربارهٔ اسنادتان بپرسید.",
    uploadDocument: "بارگذاری سند",
    uploadHint: (max) => `txt، md، html یا pdf، تا ${max}.`,
    uploading: (name, percent) => `بارگذاری ${name}: ${percent}٪`,
    unsupportedType: (name) => `نوع ${name} پشتیبانی نمی‌شود: txt، md، html یا pdf.`,
    tooLarge: (name, max) => `${name} از سقف ${max} بزرگ‌تر است.`,
    emptyFile: (name) => `${name} خالی است.`,
    pasteText: "چسباندن متن به‌عنوان سند",
    title: "عنوان",
    text: "متن",
    format: "قالب",
    addDocument: "افزودن سند",
    noDocuments: "هنوز سندی نیست. یکی بارگذاری کنید یا متنی بچسبانید.",
    status: "وضعیت",
    type: "نوع",
    chunks: "بخش‌ها",
    added: "افزوده شده",
    actions: "کارها",
    delete: "حذف",
    deleteDocument: (title) => `حذف ${title}`,
    confirmDelete: (title) => `«${title}» حذف شود؟ پاسخ‌ها دیگر از آن استفاده نمی‌کنند.`,
    statuses: { pending: "در انتظار", processing: "در حال پردازش", ready: "آماده", failed: "ناموفق", deleting: "در حال حذف" },
    stages: { parsing: "خواندن", embedding: "برداری‌سازی", indexing: "نمایه‌سازی" },
    from: "از",
    to: "تا",
    show: "نمایش",
    tokensPerDay: "توکن در روز، به تفکیک مدل",
    totalTokens: "کل توکن‌ها",
    noUsage: "در این بازه مصرفی نیست.",
    day: "روز",
    model: "مدل",
    inputTokens: "ورودی",
    outputTokens: "خروجی",
    tokens: "توکن",
    budget: "بودجهٔ ماهانهٔ توکن",
    budgetUnlimited: "بودجهٔ ماهانه‌ای نیست: مصرف نامحدود است.",
    budgetLine: (used, limit, reserved, remaining) =>
      `${used} از ${limit} مصرف شده، ${reserved} رزرو برای درخواست‌های در جریان، ${remaining} مانده.`,
    chartLabel: (total, days) => `نمودار میله‌ای ${total} توکن در ${days} روز.`,
    noInvoices: "هنوز صورت‌حسابی نیست.",
    period: "روز",
    amount: "مبلغ",
    pay: "پرداخت با زیبال",
    lines: "ردیف‌ها",
    kind: "نوع",
    price: "بها برای هر ۱۰۰۰ توکن",
    invoiceStatus: { open: "باز", paid: "پرداخت شده", payment_failed: "پرداخت ناموفق", nothing_due: "بدون بدهی" },
    tomans: "تومان",
    loading: "در حال بارگیری…",
    loadMore: "بیشتر",
    forbidden: "این کلید اجازهٔ این کار را ندارد.",
  },
};

export const LANGUAGES = [
  { code: "en", label: "English", dir: "ltr", locale: "en-GB" },
  { code: "fa", label: "فارسی", dir: "rtl", locale: "fa-IR" },
];
const STORAGE = "docuchat.language";

let current = LANGUAGES.find((l) => l.code === localStorage.getItem(STORAGE)) ?? LANGUAGES[0];

export const language = () => current.code;

export function setLanguage(code) {
  current = LANGUAGES.find((l) => l.code === code) ?? LANGUAGES[0];
  localStorage.setItem(STORAGE, current.code);
  document.documentElement.lang = current.code;
  document.documentElement.dir = current.dir;
}

// t("send"), or t("uploading", name, 40) for the strings that take values.
export function t(name, ...values) {
  const entry = STRINGS[current.code][name] ?? STRINGS.en[name];
  return typeof entry === "function" ? entry(...values) : entry;
}

export const number = (value) => new Intl.NumberFormat(current.locale).format(value ?? 0);

export const tomans = (value) => `${number(value)} ${t("tomans")}`;

export function bytes(value) {
  const mb = value / (1024 * 1024);
  return mb >= 1 ? `${number(Math.round(mb * 10) / 10)} MB` : `${number(Math.ceil(value / 1024))} KB`;
}

export function date(value, withTime = false) {
  if (!value) return "";
  // A bare day ("2026-12-01") is that calendar day, not midnight UTC in another zone.
  const when = typeof value === "string" && value.length === 10 ? new Date(value + "T12:00:00") : new Date(value);
  const options = withTime ? { dateStyle: "medium", timeStyle: "short" } : { dateStyle: "medium" };
  return new Intl.DateTimeFormat(current.locale, options).format(when);
}

// A day on a chart's axis: day and month only.
export const shortDate = (day) =>
  new Intl.DateTimeFormat(current.locale, { day: "numeric", month: "short" }).format(new Date(day + "T12:00:00"));

setLanguage(current.code);
