// What main.js prints: edit it together and run again.
function greet(name) {
  return `Hello, ${name}!`;
}

module.exports = { greet };
