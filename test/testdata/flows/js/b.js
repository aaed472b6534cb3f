document.body.insertAdjacentText("beforeend", "[" + window.flowsA + "][b.js ran]");
