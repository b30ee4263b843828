"""Layout measurements in a real browser, shared by tests/test_book.py and tests/test_slides.py.

Each constant is a JavaScript function for Playwright's ``page.evaluate``; each returns a list of
problems (empty when the page is fine), so a test can assert ``== []`` and print what is wrong.

- :data:`CLIPPED_MATH`: every MathJax element (MathJax 2 ``.MathJax``, MathJax 3
  ``mjx-container``) measured against its containers: an ancestor that hides overflow
  (``overflow: hidden`` or ``clip``) must hold the formula's whole box, and a formula with no
  scrolling ancestor must stay inside the column (``root``). A formula inside a container that
  scrolls is reachable and passes.
- :data:`TOGGLES_PER_EXERCISE`: the toggles (``<details>``) that follow each ``Exercise N.``
  paragraph up to the next exercise or heading: at most one each.
- :data:`OVERWIDE_FIGURES`: every figure (``img``) under ``root`` against the area it may use
  (``bound``: the column, or the column and its margin for a full-width cell): it must not stick
  out of it, nor be shrunk by more than ``maxShrink`` from its own width (a figure drawn at
  100 dpi shrunk 1.5x shows 10-point text about 9 px high; more is unreadable).
- :data:`TALL_SLIDES`: every reveal.js slide's content height against the deck's height.
"""

CLIPPED_MATH = """(rootSelector) => {
    const root = document.querySelector(rootSelector) || document.body;
    const column = root.getBoundingClientRect();
    const problems = [];
    const hides = e => ['hidden', 'clip'].includes(getComputedStyle(e).overflowX);
    const scrolls = e => ['auto', 'scroll'].includes(getComputedStyle(e).overflowX);
    const boxes = [...root.querySelectorAll('.MathJax, mjx-container')]
        .filter(e => !e.parentElement.closest('.MathJax, mjx-container'));
    let measured = 0;
    for (const el of boxes) {
        const box = el.getBoundingClientRect();
        if (box.width === 0 && box.height === 0) continue;  // not displayed (a closed toggle)
        measured += 1;
        const label = (el.textContent || '').trim().slice(0, 60);
        // inside the formula: MathJax 2 draws it in a box (span.math) that hides overflow
        let right = box.right, left = box.left, clipped = null;
        for (const inner of [el, ...el.querySelectorAll(':scope > nobr > span.math')]) {
            if (inner.scrollWidth > inner.clientWidth + 1 && hides(inner)) {
                clipped = `clipped: "${label}" needs ${inner.scrollWidth} px, ` +
                    `its box shows ${inner.clientWidth} px`;
                break;
            }
            const r = inner.getBoundingClientRect();
            right = Math.max(right, r.left + inner.scrollWidth);
            left = Math.min(left, r.left);
        }
        // around it: the first container that scrolls makes it reachable; one that hides
        // overflow must hold it whole; with neither, it must stay inside the column
        let reachable = false;
        for (let a = el.parentElement; a && !clipped; a = a.parentElement) {
            if (scrolls(a)) { reachable = true; break; }
            const r = a.getBoundingClientRect();
            if (hides(a) && (right > r.right + 1 || left < r.left - 1)) {
                clipped = `clipped: "${label}" is ${Math.round(right - left)} px wide, ` +
                    `its container shows ${Math.round(r.width)} px`;
            }
            if (a === root || a === document.body) break;
        }
        if (!clipped && !reachable && (right > column.right + 1 || left < column.left - 1)) {
            clipped = `spills: "${label}" is ${Math.round(right - left)} px wide in a ` +
                `${Math.round(column.width)} px column`;
        }
        if (clipped) problems.push(clipped);
    }
    return {measured, problems};
}"""

TOGGLES_PER_EXERCISE = """(rootSelector) => {
    const root = document.querySelector(rootSelector) || document.body;
    const walker = document.createTreeWalker(root, NodeFilter.SHOW_ELEMENT);
    const counts = [];
    let current = null;
    for (let el = walker.nextNode(); el; el = walker.nextNode()) {
        if (/^H[1-3]$/.test(el.tagName)) { current = null; continue; }
        if (el.tagName === 'STRONG' && /^Exercise \\d+/.test(el.textContent.trim())
                && el.parentElement.tagName === 'P' && el.parentElement.firstElementChild === el
                && !el.closest('details')) {
            current = {exercise: el.textContent.trim(), toggles: 0};
            counts.push(current);
            continue;
        }
        if (el.tagName === 'DETAILS' && current && !el.parentElement.closest('details')) {
            current.toggles += 1;
        }
    }
    const problems = counts.filter(c => c.toggles > 1)
        .map(c => `${c.exercise} has ${c.toggles} toggles`);
    return {exercises: counts.length, toggles: counts.reduce((s, c) => s + c.toggles, 0),
            problems};
}"""

OVERWIDE_FIGURES = """([rootSelector, boundSelector, maxShrink]) => {
    const root = document.querySelector(rootSelector) || document.body;
    const column = (document.querySelector(boundSelector) || root).getBoundingClientRect();
    const problems = [];
    let measured = 0;
    for (const img of root.querySelectorAll('img')) {
        const box = img.getBoundingClientRect();
        if (box.width === 0 || img.closest('details:not([open])')) continue;
        measured += 1;
        // a retina image declares its CSS width; otherwise its pixels are its width
        const own = Number(img.getAttribute('width')) || img.naturalWidth;
        const name = (img.getAttribute('alt') || img.src.split('/').pop()).slice(0, 40);
        if (box.right > column.right + 1) {
            problems.push(`${name}: sticks out of the ${Math.round(column.width)} px column ` +
                `by ${Math.round(box.right - column.right)} px`);
        }
        if (own / box.width > maxShrink) {
            problems.push(`${name}: ${own} px shown at ${Math.round(box.width)} px ` +
                `(shrunk ${(own / box.width).toFixed(2)}x)`);
        }
    }
    return {measured, problems};
}"""

TALL_SLIDES = """async () => {
    const problems = [];
    let tallest = 0, where = [0, 0];
    const slides = Reveal.getSlides();
    const height = Reveal.getConfig().height;
    for (const slide of slides) {
        const i = Reveal.getIndices(slide);
        Reveal.slide(i.h, i.v);
        await new Promise(r => requestAnimationFrame(() => r()));
        const content = slide.scrollHeight;
        if (content > tallest) { tallest = content; where = [i.h, i.v || 0]; }
        const title = (slide.querySelector('h1, h2, h3, p') || slide).textContent.trim()
            .slice(0, 50);
        if (content > height + 1) {
            problems.push(`slide ${i.h}.${i.v || 0} "${title}": ${content} px tall, ` +
                `the deck is ${height} px`);
        }
    }
    return {measured: slides.length, tallest, where, problems};
}"""
