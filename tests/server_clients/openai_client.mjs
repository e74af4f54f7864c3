// The official `openai` npm client against `modserve serve`: chat with an image
// (streaming and not), completions (streaming and not), models; asserts the response
// shapes the client exposes. Usage: node openai_client.mjs BASE_URL MODEL PNG_PATH
// Exit 0 on success, 1 on a failed check, 77 when the package is not installed.
import { readFileSync } from 'node:fs';

let OpenAI;
try {
  OpenAI = (await import('openai')).default;
} catch (e) {
  console.error('openai package not available:', e.message);
  process.exit(77);
}

const [base, model, png] = process.argv.slice(2);
const client = new OpenAI({ baseURL: `${base}/v1`, apiKey: 'unused', maxRetries: 0 });
let failures = 0;
function check(cond, what) {
  if (!cond) {
    failures++;
    console.error('FAIL', what);
  }
}

const image = `data:image/png;base64,${readFileSync(png).toString('base64')}`;
const messages = [{
  role: 'user',
  content: [
    { type: 'image_url', image_url: { url: image } },
    { type: 'text', text: 'What is in this image?' },
  ],
}];

const models = await client.models.list();
check(models.data.length === 1 && models.data[0].id === model, 'models.list');

const chat = await client.chat.completions.create({ model, messages, max_tokens: 8, temperature: 0 });
check(chat.id.startsWith('chatcmpl-') && chat.object === 'chat.completion', 'chat id/object');
check(chat.choices.length === 1 && chat.choices[0].message.role === 'assistant', 'chat choice');
check(typeof chat.choices[0].message.content === 'string', 'chat content');
check(['stop', 'length'].includes(chat.choices[0].finish_reason), 'chat finish_reason');
check(chat.usage.prompt_tokens > 64 && chat.usage.completion_tokens >= 1 &&
      chat.usage.total_tokens === chat.usage.prompt_tokens + chat.usage.completion_tokens, 'chat usage');

const stream = await client.chat.completions.create({
  model, messages, max_tokens: 8, temperature: 0, stream: true, stream_options: { include_usage: true },
});
let text = '', finish = null, usage = null, firstId = null;
for await (const chunk of stream) {
  firstId ??= chunk.id;
  check(chunk.object === 'chat.completion.chunk' && chunk.id === firstId, 'chunk shape');
  if (chunk.choices.length) {
    text += chunk.choices[0].delta.content ?? '';
    if (chunk.choices[0].finish_reason) finish = chunk.choices[0].finish_reason;
  }
  if (chunk.usage) usage = chunk.usage;
}
check(text === chat.choices[0].message.content, `stream text '${text}' vs '${chat.choices[0].message.content}'`);
check(finish === chat.choices[0].finish_reason, 'stream finish_reason');
check(usage && usage.completion_tokens === chat.usage.completion_tokens, 'stream usage');

const comp = await client.completions.create({ model, prompt: 'Once upon a time', max_tokens: 6, temperature: 0 });
check(comp.id.startsWith('cmpl-') && comp.object === 'text_completion', 'completion id/object');
check(typeof comp.choices[0].text === 'string' && comp.usage.completion_tokens >= 1, 'completion shape');
const cstream = await client.completions.create({
  model, prompt: 'Once upon a time', max_tokens: 6, temperature: 0, stream: true,
});
let ctext = '';
for await (const chunk of cstream) ctext += chunk.choices[0]?.text ?? '';
check(ctext === comp.choices[0].text, `completion stream '${ctext}' vs '${comp.choices[0].text}'`);

try {
  await client.chat.completions.create({ model, messages: [], max_tokens: 2 });
  check(false, 'empty messages accepted');
} catch (e) {
  check(e.status === 400 && e.error && typeof e.error.message === 'string', 'error shape');
}

console.log(failures ? `${failures} checks failed` : 'openai client: all checks passed');
process.exit(failures ? 1 : 0);
