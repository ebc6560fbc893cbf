/* The query language of mlxpy.Reader.filter (mlxpy/reading/query.py), evaluated in the page.
 *
 *   window.mlxpy.query.compile(text, columnNames) -> function (table) -> Uint8Array (1 = selected)
 *   window.mlxpy.query.QueryError: .message (three lines, as Python's), .position, .query
 *
 * `table` is the payload's `runs`: {ids: [...], columns: {name: [value, ...]}}; `log_id` is
 * `table.ids`. The grammar, the limits (MAX_DEPTH, MAX_NUMBER_LENGTH), the error positions and
 * the results are those of the Python evaluator (tests/test_query_js.py checks them against
 * each other on a real run store). No eval, no Function(): a tokenizer, a recursive-descent
 * parser and an evaluator over columns.
 *
 * Where JavaScript cannot agree with Python, on purpose documented here:
 * - Numbers are doubles. Python compares ints exactly, and ints with floats exactly; here an
 *   int beyond 2**53 (in a run's value, which the payload writes as a JSON number, or in the
 *   query) is rounded to the nearest double first, so two ints that differ only past 2**53
 *   compare equal here and not in Python.
 * - The hint "did you mean ...?" after an unknown key is not given here (difflib's choice).
 * - The "numbers are written with the digits 0-9" hint is given for Unicode number characters
 *   (\p{N}); Python also gives it for the few CJK ideographs that have a numeric value.
 * Everything else (missing values, bool vs number, string vs number, lists, `none`, code-point
 * order of strings) behaves as in Python.
 */
(function (root) {
  "use strict";

  var MAX_DEPTH = 100;
  var MAX_NUMBER_LENGTH = 100;
  // Python's \s (str.isspace), not JavaScript's (which has U+FEFF, lacks U+001C-U+001F)
  var WS = "\\t-\\r\\x1c-\\x20\\x85\\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000";
  var TOKEN = new RegExp(
    "([" + WS + "]+)" +
      "|([-+]?(?:[0-9]+\\.[0-9]*|\\.[0-9]+|[0-9]+)(?:[eE][-+]?[0-9]+)?(?![A-Za-z_]))" +
      "|('(?:[^'\\\\]|\\\\[\\s\\S])*'|\"(?:[^\"\\\\]|\\\\[\\s\\S])*\")" +
      "|(==|!=|<=|>=|<|>|&&|\\|\\||[&|~()\\[\\],])" +
      "|([A-Za-z_][A-Za-z0-9_\\-]*(?:\\.[A-Za-z0-9_\\-]+)*)",
    "y"
  );
  var KINDS = [null, "space", "number", "string", "op", "name"];
  var LITERAL_WORDS = { true: true, false: false, none: null, null: null };
  var KEYWORDS = { and: 1, or: 1, not: 1, in: 1, contains: 1 };
  var COMPARISONS = { "==": 1, "!=": 1, "<": 1, "<=": 1, ">": 1, ">=": 1, in: 1, "not in": 1 };
  var CONTAINS = { contains: "in", "not contains": "not in" };
  var IN_TAKES = "takes a list such as [1, 2], or a key whose values are lists";
  var UNPRINTABLE = /[\p{Cc}\p{Cf}\p{Cs}\p{Co}\p{Cn}\p{Zl}\p{Zp}\p{Zs}]/u;
  var SPACE = new RegExp("^[" + WS + "]$");
  var NUMERIC = /^\p{N}$/u;

  function codePoints(text) {
    return Array.from(text);
  }

  function isPrintable(ch) {
    return ch === " " || !UNPRINTABLE.test(ch);
  }

  function hex(n, width) {
    var s = n.toString(16);
    while (s.length < width) s = "0" + s;
    return s;
  }

  /* Python's repr() of a string, for messages that quote a token as Python's do. */
  function pyRepr(text) {
    var quote = text.indexOf("'") >= 0 && text.indexOf('"') < 0 ? '"' : "'";
    var out = quote;
    codePoints(text).forEach(function (ch) {
      var c = ch.codePointAt(0);
      if (ch === quote || ch === "\\") out += "\\" + ch;
      else if (ch === "\t") out += "\\t";
      else if (ch === "\n") out += "\\n";
      else if (ch === "\r") out += "\\r";
      else if (c < 0x20 || c === 0x7f) out += "\\x" + hex(c, 2);
      else if (!isPrintable(ch)) {
        if (c <= 0xff) out += "\\x" + hex(c, 2);
        else if (c <= 0xffff) out += "\\u" + hex(c, 4);
        else out += "\\U" + hex(c, 8);
      } else out += ch;
    });
    return out + quote;
  }

  /* A query that does not parse or names an unknown key. `position` counts code points, as
   * Python's does; the message shows the query one character per character with a caret. */
  function QueryError(query, unitPos, message) {
    var position = codePoints(query.slice(0, unitPos)).length;
    var shown = codePoints(query)
      .map(function (c) {
        return isPrintable(c) ? c : SPACE.test(c) ? " " : "?";
      })
      .join("");
    var caret = new Array(position + 1).join(" ") + "^";
    this.name = "QueryError";
    this.message = message + "\n  " + shown + "\n  " + caret;
    this.query = query;
    this.position = position;
    this.stack = new Error(this.message).stack;
  }
  QueryError.prototype = Object.create(Error.prototype);
  QueryError.prototype.constructor = QueryError;

  function tokenize(query) {
    var tokens = [];
    var pos = 0;
    while (pos < query.length) {
      TOKEN.lastIndex = pos;
      var m = TOKEN.exec(query);
      if (m === null) throw unexpected(query, pos);
      var kind = null;
      for (var g = 1; g < KINDS.length; g++) {
        if (m[g] !== undefined) {
          kind = KINDS[g];
          break;
        }
      }
      var text = m[0];
      if (kind === "number") {
        var length = codePoints(text).length;
        if (length > MAX_NUMBER_LENGTH) {
          throw new QueryError(
            query,
            pos,
            "a number has at most " + MAX_NUMBER_LENGTH + " characters, this one has " + length
          );
        }
        tokens.push({ kind: kind, text: text, value: Number(text), pos: pos });
      } else if (kind === "string") {
        var body = text.slice(1, -1).replace(/\\([\s\S])/g, "$1");
        tokens.push({ kind: kind, text: text, value: body, pos: pos });
      } else if (kind === "op") {
        var op = text === "&&" ? "&" : text === "||" ? "|" : text;
        tokens.push({ kind: kind, text: op, value: op, pos: pos });
      } else if (kind === "name") {
        var lower = text.toLowerCase();
        if (Object.prototype.hasOwnProperty.call(LITERAL_WORDS, lower)) {
          tokens.push({ kind: "literal", text: text, value: LITERAL_WORDS[lower], pos: pos });
        } else if (Object.prototype.hasOwnProperty.call(KEYWORDS, lower)) {
          tokens.push({ kind: "keyword", text: lower, value: lower, pos: pos });
        } else {
          tokens.push({ kind: kind, text: text, value: text, pos: pos });
        }
      }
      pos += text.length;
    }
    tokens.push({ kind: "end", text: "", value: null, pos: query.length });
    return tokens;
  }

  function unexpected(query, pos) {
    var ch = String.fromCodePoint(query.codePointAt(pos));
    if (ch === "'" || ch === '"') {
      return new QueryError(query, pos, "unterminated string: no closing " + pyRepr(ch));
    }
    var nonAsciiDigit = NUMERIC.test(ch) && ch.codePointAt(0) > 0x7f;
    var hint = nonAsciiDigit ? "; numbers are written with the digits 0-9" : "";
    return new QueryError(query, pos, "unexpected character " + pyRepr(ch) + hint);
  }

  // -- syntax tree: {type: "key", name, pos} | {type: "literal", value, list, pos}
  //    | {type: "compare", left, op, right} | {type: "exists", key}
  //    | {type: "bool", op: "and"|"or", parts} | {type: "not", part}
  function Parser(query) {
    this.query = query;
    this.tokens = tokenize(query);
    this.i = 0;
    this.depth = 0;
  }

  Parser.prototype.tok = function () {
    return this.tokens[this.i];
  };

  Parser.prototype.fail = function (message, token) {
    token = token || this.tok();
    var found = token.kind === "end" ? "the end of the query" : pyRepr(token.text);
    return new QueryError(this.query, token.pos, message + ", found " + found);
  };

  Parser.prototype.accept = function () {
    var tok = this.tok();
    if (tok.kind === "op" || tok.kind === "keyword") {
      for (var k = 0; k < arguments.length; k++) {
        if (tok.text === arguments[k]) {
          this.i += 1;
          return tok;
        }
      }
    }
    return null;
  };

  Parser.prototype.parse = function () {
    if (this.tok().kind === "end") return null;
    var tree = this.parseOr();
    if (this.tok().kind !== "end") {
      throw this.fail("expected '&', '|', 'and', 'or' or the end of the query");
    }
    return tree;
  };

  Parser.prototype.parseOr = function () {
    var parts = [this.parseAnd()];
    while (this.accept("|", "or")) parts.push(this.parseAnd());
    return parts.length === 1 ? parts[0] : { type: "bool", op: "or", parts: parts };
  };

  Parser.prototype.parseAnd = function () {
    var parts = [this.parseNot()];
    while (this.accept("&", "and")) parts.push(this.parseNot());
    return parts.length === 1 ? parts[0] : { type: "bool", op: "and", parts: parts };
  };

  Parser.prototype.parseNot = function () {
    var token = this.tok();
    var tree;
    if (this.accept("~", "not")) {
      this.enter(token);
      tree = { type: "not", part: this.parseNot() };
    } else if (this.accept("(")) {
      this.enter(token);
      tree = this.parseOr();
      if (!this.accept(")")) throw this.fail("expected ')'");
    } else {
      return this.parseComparison();
    }
    this.depth -= 1;
    return tree;
  };

  Parser.prototype.enter = function (token) {
    this.depth += 1;
    if (this.depth > MAX_DEPTH) {
      throw new QueryError(
        this.query,
        token.pos,
        "the query nests deeper than " + MAX_DEPTH + " levels of '(', 'not' and '~'"
      );
    }
  };

  Parser.prototype.parseComparison = function () {
    var start = this.tok();
    var left = this.parseOperand();
    var opToken = this.tok();
    var op = null;
    var next = this.tokens[this.i + 1];
    if (opToken.kind === "op" && COMPARISONS[opToken.text]) {
      op = opToken.text;
      this.i += 1;
    } else if (this.accept("in")) {
      op = "in";
    } else if (this.accept("contains")) {
      op = "contains";
    } else if (
      opToken.kind === "keyword" &&
      opToken.text === "not" &&
      next.kind === "keyword" &&
      (next.text === "in" || next.text === "contains")
    ) {
      op = "not " + next.text;
      this.i += 2;
    }
    if (op === null) {
      if (left.type === "key") return { type: "exists", key: left };
      throw this.fail("expected a comparison (==, !=, <, <=, >, >=, in, not in, contains)");
    }
    var right = this.parseOperand();
    if (CONTAINS[op]) {
      if (left.type !== "key") {
        throw new QueryError(this.query, start.pos, "'" + op + "' needs a key on its left");
      }
      if (right.type === "literal" && right.list) {
        throw new QueryError(this.query, right.pos, "'" + op + "' takes one value, not a list");
      }
      return { type: "compare", left: right, op: CONTAINS[op], right: left };
    }
    if (left.type !== "key" && right.type !== "key") {
      throw new QueryError(this.query, start.pos, "a comparison needs a key on one side");
    }
    var membership = op === "in" || op === "not in";
    [left, right].forEach(function (side) {
      var listed = side.type === "literal" && side.list;
      if (listed && !(membership && side === right)) {
        throw new QueryError(this.query, side.pos, "a list can only follow 'in' or 'not in'");
      }
    }, this);
    if (membership && right.type === "literal" && !right.list) {
      throw new QueryError(this.query, right.pos, "'" + op + "' " + IN_TAKES);
    }
    return { type: "compare", left: left, op: op, right: right };
  };

  Parser.prototype.parseOperand = function () {
    var tok = this.tok();
    if (tok.kind === "name") {
      this.i += 1;
      return { type: "key", name: tok.text, pos: tok.pos };
    }
    if (tok.kind === "number" || tok.kind === "string" || tok.kind === "literal") {
      this.i += 1;
      return { type: "literal", value: tok.value, list: false, pos: tok.pos };
    }
    if (this.accept("[")) {
      var values = [];
      if (!this.accept("]")) {
        for (;;) {
          var item = this.tok();
          if (item.kind !== "number" && item.kind !== "string" && item.kind !== "literal") {
            throw this.fail("expected a number, a string, true, false or none");
          }
          values.push(item.value);
          this.i += 1;
          if (this.accept("]")) break;
          if (!this.accept(",")) throw this.fail("expected ',' or ']'");
        }
      }
      return { type: "literal", value: values, list: true, pos: tok.pos };
    }
    throw this.fail("expected a key, a number, a string or a list");
  };

  // -- values, compared as Python compares them ------------------------------------------
  function isMissing(v) {
    return v === null || v === undefined || (typeof v === "number" && v !== v);
  }

  function isList(v) {
    return Array.isArray(v);
  }

  function isPlainObject(v) {
    return v !== null && typeof v === "object" && !Array.isArray(v);
  }

  /* Strings in code-point order (Python's), not UTF-16 code-unit order (JavaScript's <). */
  function compareStrings(a, b) {
    var i = 0;
    var j = 0;
    while (i < a.length && j < b.length) {
      var x = a.codePointAt(i);
      var y = b.codePointAt(j);
      if (x !== y) return x < y ? -1 : 1;
      i += x > 0xffff ? 2 : 1;
      j += y > 0xffff ? 2 : 1;
    }
    return i < a.length ? 1 : j < b.length ? -1 : 0;
  }

  var UNORDERED = {}; // Python's TypeError: no order between these values

  /* Python's `a == b` for values inside lists (there True == 1, as in Python). */
  function pyEquals(a, b) {
    if (a === null || b === null) return a === b;
    var numA = typeof a === "number" || typeof a === "boolean";
    var numB = typeof b === "number" || typeof b === "boolean";
    if (numA && numB) return Number(a) === Number(b);
    if (typeof a === "string" && typeof b === "string") return a === b;
    if (isList(a) && isList(b)) {
      if (a.length !== b.length) return false;
      for (var k = 0; k < a.length; k++) if (!pyEquals(a[k], b[k])) return false;
      return true;
    }
    if (isPlainObject(a) && isPlainObject(b)) {
      var keys = Object.keys(a);
      if (keys.length !== Object.keys(b).length) return false;
      return keys.every(function (key) {
        return Object.prototype.hasOwnProperty.call(b, key) && pyEquals(a[key], b[key]);
      });
    }
    return false;
  }

  /* Python's ordering: -1, 0, 1, or UNORDERED where Python raises TypeError. */
  function pyOrder(a, b) {
    var numA = typeof a === "number" || typeof a === "boolean";
    var numB = typeof b === "number" || typeof b === "boolean";
    if (numA && numB) {
      var x = Number(a);
      var y = Number(b);
      return x < y ? -1 : x > y ? 1 : x === y ? 0 : UNORDERED;
    }
    if (typeof a === "string" && typeof b === "string") return compareStrings(a, b);
    if (isList(a) && isList(b)) {
      // lexicographic: the first pair that differs decides, else the shorter list is less
      for (var k = 0; k < a.length && k < b.length; k++) {
        if (!pyEquals(a[k], b[k])) return pyOrder(a[k], b[k]);
      }
      return a.length < b.length ? -1 : a.length > b.length ? 1 : 0;
    }
    return UNORDERED;
  }

  /* One comparison; mismatched values are simply not equal. A missing value equals only
   * another missing one and is never ordered; a bool is no number. */
  function apply(op, a, b) {
    var ma = isMissing(a);
    var mb = isMissing(b);
    if (ma || mb) return (op === "==" || op === "!=") && (ma && mb) === (op === "==");
    if ((typeof a === "boolean") !== (typeof b === "boolean")) return op === "!=";
    if (op === "==") return pyEquals(a, b);
    if (op === "!=") return !pyEquals(a, b);
    var order = pyOrder(a, b);
    if (order === UNORDERED) return false;
    if (op === "<") return order < 0;
    if (op === "<=") return order <= 0;
    if (op === ">") return order > 0;
    return order >= 0; // >=
  }

  function member(v, values) {
    for (var k = 0; k < values.length; k++) if (apply("==", v, values[k])) return true;
    return false;
  }

  var SWAPPED = { "<": ">", ">": "<", "<=": ">=", ">=": "<=" };

  // -- evaluation, in the order Python's evaluator reads the keys (so the first error is
  //    the same one): every part of `and`/`or` is evaluated, never short-circuited
  function Evaluator(query, names, table) {
    this.query = query;
    this.names = names;
    this.table = table;
    this.n = table ? table.ids.length : 0;
  }

  Evaluator.prototype.column = function (key) {
    if (!Object.prototype.hasOwnProperty.call(this.names, key.name)) {
      throw new QueryError(this.query, key.pos, "no run has the key '" + key.name + "'");
    }
    if (this.table === null) return null; // compile-time check only
    var columns = this.table.columns;
    if (Object.prototype.hasOwnProperty.call(columns, key.name)) return columns[key.name];
    if (key.name === "log_id") return this.table.ids;
    throw new QueryError(this.query, key.pos, "no run has the key '" + key.name + "'");
  };

  /* ``test`` of a run's value, computed once per distinct scalar value: a column holds few
   * of them (config), and a test of a scalar depends on nothing else. */
  function perValue(values, test) {
    var seen = new Map();
    return function (j) {
      var v = values[j];
      if (v !== null && typeof v === "object") return test(v);
      var hit = seen.get(v);
      if (hit === undefined) {
        hit = test(v);
        seen.set(v, hit);
      }
      return hit;
    };
  }

  Evaluator.prototype.mask = function (test) {
    var out = new Uint8Array(this.n);
    for (var i = 0; i < this.n; i++) out[i] = test(i) ? 1 : 0;
    return out;
  };

  Evaluator.prototype.eval = function (node) {
    var out, other, k, i;
    if (node.type === "bool") {
      out = this.eval(node.parts[0]);
      for (k = 1; k < node.parts.length; k++) {
        other = this.eval(node.parts[k]);
        for (i = 0; i < this.n; i++) {
          out[i] = node.op === "and" ? out[i] & other[i] : out[i] | other[i];
        }
      }
      return out;
    }
    if (node.type === "not") {
      out = this.eval(node.part);
      for (i = 0; i < this.n; i++) out[i] = out[i] ? 0 : 1;
      return out;
    }
    if (node.type === "exists") {
      var values = this.column(node.key);
      return this.mask(function (j) {
        return !isMissing(values[j]);
      });
    }
    return this.compare(node);
  };

  Evaluator.prototype.compare = function (node) {
    var op = node.op;
    var left = node.left;
    var right = node.right;
    if (op === "in" || op === "not in") {
      var found = this.member(left, right, op);
      if (op === "not in") for (var i = 0; i < this.n; i++) found[i] = found[i] ? 0 : 1;
      return found;
    }
    if (left.type === "literal") {
      var swap = left;
      left = right;
      right = swap;
      op = SWAPPED[op] || op;
    }
    var series = this.column(left);
    if (right.type === "key") {
      var others = this.column(right);
      return this.mask(function (j) {
        return apply(op, series[j], others[j]);
      });
    }
    var value = right.value;
    if (value === null && (op === "==" || op === "!=")) {
      return this.mask(function (j) {
        return isMissing(series[j]) === (op === "==");
      });
    }
    return this.mask(
      perValue(series, function (v) {
        return apply(op, v, value);
      })
    );
  };

  Evaluator.prototype.member = function (left, right, op) {
    if (right.type === "literal") {
      var values = this.column(left);
      return this.mask(
        perValue(values, function (v) {
          return member(v, right.value);
        })
      );
    }
    var lefts = left.type === "key" ? this.column(left) : null;
    var cells = this.column(right);
    if (this.table === null) return null;
    if (!cells.some(isList)) {
      throw new QueryError(
        this.query,
        right.pos,
        "'" + op + "' " + IN_TAKES + "; no run has a list under '" + right.name + "'"
      );
    }
    return this.mask(function (j) {
      var v = lefts === null ? left.value : lefts[j];
      return isList(cells[j]) && member(v, cells[j]);
    });
  };

  /* The keys' existence checked before any data is seen, in evaluation order, up to the
   * first check that needs the data (`x in key`: does any run hold a list there?). */
  function checkKeys(evaluator, node) {
    if (node.type === "bool") {
      for (var k = 0; k < node.parts.length; k++) {
        if (!checkKeys(evaluator, node.parts[k])) return false;
      }
      return true;
    }
    if (node.type === "not") return checkKeys(evaluator, node.part);
    if (node.type === "exists") {
      evaluator.column(node.key);
      return true;
    }
    [node.left, node.right].forEach(function (side) {
      if (side.type === "key") evaluator.column(side);
    });
    var membership = node.op === "in" || node.op === "not in";
    return !(membership && node.right.type === "key");
  }

  function parse(text) {
    if (typeof text !== "string") throw new TypeError("a query is a string");
    return new Parser(text).parse();
  }

  /* A function of the payload's `runs` giving a Uint8Array, 1 for each run the query selects.
   * Throws QueryError for a query that does not parse or names a key not in columnNames;
   * the function throws it for `x in key` where no run holds a list under key. */
  function compile(text, columnNames) {
    var tree = parse(text);
    var names = Object.create(null);
    (columnNames || []).forEach(function (name) {
      names[name] = true;
    });
    names.log_id = true;
    if (tree !== null) checkKeys(new Evaluator(text, names, null), tree);
    return function (table) {
      if (tree === null) {
        var all = new Uint8Array(table.ids.length);
        all.fill(1);
        return all;
      }
      return new Evaluator(text, names, table).eval(tree);
    };
  }

  var api = {
    compile: compile,
    parse: parse,
    QueryError: QueryError,
    MAX_DEPTH: MAX_DEPTH,
    MAX_NUMBER_LENGTH: MAX_NUMBER_LENGTH,
  };
  root.mlxpy = root.mlxpy || {};
  root.mlxpy.query = api;
})(typeof window !== "undefined" ? window : this);
