// The customer's site: what a shop pastes to embed the chat. The widget runs in an iframe served
// from the chat domain (`?chat=`, default this page's origin) and is told this page's origin,
// which the API checks against the assistant's allowed domains.

const params = new URLSearchParams(location.search);
const chat = params.get('chat') ?? location.origin;
const assistantId = params.get('assistant_id') ?? '3';
const frame = document.createElement('iframe');
frame.id = 'replyx-widget';
frame.title = 'Chat';
frame.src = `${chat}/demo/widget.html?${new URLSearchParams({ assistant_id: assistantId, parent_origin: location.origin }).toString()}`;
document.getElementById('widget-slot')?.append(frame);
const origin = document.getElementById('origin');
if (origin) origin.textContent = location.origin;
