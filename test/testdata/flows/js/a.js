window.flowsA = "a.js ran";
