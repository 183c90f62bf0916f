# frozen_string_literal: true

# batchless patch shim (issue 18): runs a data patch's command (`bin/rake TASK [ARGS]` or
# `bin/rails runner SCRIPT [ARGS]`) inside the app's process and measures what it does.
#
#   ruby patch_shim.rb MODE OUT_FILE LOCK_MS STATEMENT_MS TIME_LIMIT_S -- bin/rake data:x a b
#
# MODE dry-run: the command runs inside ONE database transaction that is always rolled back
#   (`SET LOCAL lock_timeout` / `statement_timeout`, a total time limit), Sidekiq / ActiveJob
#   enqueues and mail deliveries are captured (not sent), outbound connections other than the
#   database and Redis are blocked (and counted), a second database connection and a COMMIT are
#   refused. Exits 0 once the preview is written (the outcome is in the preview).
# MODE run: the real run. Nothing is blocked or captured; the same counts are measured where
#   the shim can see them (every transaction the app commits through ActiveRecord, and each
#   autocommit statement, wrapped in its own transaction to read its counts). Exits with the
#   command's status.
#
# The preview (or the measure of the run) is one JSON document written to OUT_FILE:
#   {"batchless":"patch-measure","v":1,"mode":..,"outcome":"ok|exited|raised|timed_out|lock_bound",
#    "exitStatus":N,"error":{"class","message"}|null,"durationMs":N,
#    "tables":{"public.users":{"inserted":0,"updated":3,"deleted":0}},"jobs":{"Class":N},
#    "mails":N,"blockedConnections":{"host:port":N},"outputTail":"...","limits":{...},
#    "rolledBack":bool,"measured":bool}
# Per-table counts come from PostgreSQL's `pg_stat_xact_user_tables` (exact per transaction,
# aborted subtransactions included: the statements were attempted).
#
# Shipped by batchless and written into the build by batchless's own buildspec (never from the
# app's repository, never named by a variable a caller can set).

require "json"
require "socket"
require "uri"

module Batchless
  module PatchShim
    TAIL_LINES = 40
    TAIL_BYTES = 8 * 1024
    GRACE_SECONDS = 10

    class Refused < StandardError; end
    class TimeLimitExceeded < Exception; end # rubocop:disable Lint/InheritException

    # Writes through to the real stream, keeps the last lines for the preview.
    class Tee
      def initialize(io, tail)
        @io = io
        @tail = tail
      end

      def write(*parts)
        parts.each { |p| @tail << p.to_s }
        @tail.slice!(0, @tail.bytesize - TAIL_BYTES * 2) if @tail.bytesize > TAIL_BYTES * 4
        @io.write(*parts)
      end

      def method_missing(name, *args, &blk)
        @io.respond_to?(name) ? @io.send(name, *args, &blk) : super
      end

      def respond_to_missing?(name, priv = false)
        @io.respond_to?(name, priv) || super
      end

      def <<(s)
        write(s)
        self
      end

      def print(*a)
        write(*a)
        nil
      end

      def puts(*a)
        if a.empty?
          write("\n")
        else
          a.flatten.each { |x| s = x.to_s; write(s.end_with?("\n") ? s : "#{s}\n") }
        end
        nil
      end

      def printf(*a)
        write(format(*a))
        nil
      end
    end

    class << self
      attr_reader :mode, :state

      def dry?
        @mode == "dry-run"
      end

      def main(argv)
        mode, out, lock_ms, stmt_ms, limit_s, sep, *command = argv
        unless %w[dry-run run].include?(mode) && sep == "--" && !command.empty?
          warn "usage: patch_shim.rb dry-run|run OUT LOCK_MS STATEMENT_MS TIME_LIMIT_S -- COMMAND..."
          exit 64
        end
        @mode = mode
        @out = out
        @limits = { "lockTimeoutMs" => Integer(lock_ms), "statementTimeoutMs" => Integer(stmt_ms),
                    "timeLimitSeconds" => Integer(limit_s) }
        @command = command
        @tables = Hash.new { |h, k| h[k] = { "inserted" => 0, "updated" => 0, "deleted" => 0 } }
        @jobs = Hash.new(0)
        @mails = 0
        @blocked = Hash.new(0)
        @seen = { lock: false, statement: false }
        @timed_out = false
        @written = false
        @tail = +""
        @started = Process.clock_gettime(Process::CLOCK_MONOTONIC)
        $stdout = Tee.new($stdout, @tail)
        $stderr = Tee.new($stderr, @tail)
        install_socket_guard if dry?
        status, error = run_command
        finish(status, error)
      end

      # ---------------------------------------------------------------- running the command
      def run_command
        kind, target, args = parse(@command)
        status = 0
        error = nil
        watchdog = start_watchdog if dry?
        begin
          if kind == :rake
            require File.expand_path("config/boot", Dir.pwd)
            require "rake"
            ARGV.replace([target, *args])
            Rake.application.init("rake", [target, *args])
            Rake.application.load_rakefile
            Rake::Task["environment"].invoke if Rake::Task.task_defined?("environment")
            start_measuring
            Rake.application.top_level
          else
            require File.expand_path("config/environment", Dir.pwd)
            Rails.application.load_runner if Rails.application.respond_to?(:load_runner)
            start_measuring
            ARGV.replace(args)
            $0 = target
            load File.expand_path(target, Dir.pwd)
          end
        rescue SystemExit => e
          status = e.status
        rescue TimeLimitExceeded => e
          status = 1
          error = e
        rescue Exception => e # rubocop:disable Lint/RescueException
          status = 1
          error = e
        ensure
          watchdog&.kill
        end
        [status, error]
      end

      def parse(words)
        case words
        in ["bin/rake", target, *args] then [:rake, target, args]
        in ["bin/rails", "runner", target, *args] then [:runner, target, args]
        else
          warn "batchless patch shim: not a patch command: #{words.first(3).join(' ')}"
          exit 64
        end
      end

      # The transaction (dry run) or the commit hooks (run); hooks for jobs and mail.
      def start_measuring
        return if @measuring

        @measuring = true
        install_job_hooks
        install_mail_hooks
        return unless defined?(::ActiveRecord::Base)

        install_sql_watch
        pool = ::ActiveRecord::Base.connection_pool
        conn = ::ActiveRecord::Base.connection
        @raw = conn.raw_connection
        if dry?
          # Every thread uses this connection (and this transaction); no other connection opens.
          pool.lock_thread = true if pool.respond_to?(:lock_thread=)
          conn.begin_transaction(joinable: false)
          conn.execute("SET LOCAL lock_timeout = #{@limits['lockTimeoutMs']}")
          conn.execute("SET LOCAL statement_timeout = #{@limits['statementTimeoutMs']}")
          conn.begin_transaction(joinable: true) # a savepoint: an error inside leaves the counts readable
          @conn = conn
          install_dry_guards(conn)
        else
          install_run_hooks(conn)
        end
      end

      def start_watchdog
        main = Thread.current
        limit = @limits["timeLimitSeconds"]
        Thread.new do
          sleep limit
          @timed_out = true
          begin
            @raw&.cancel
          rescue StandardError
            nil
          end
          main.raise(TimeLimitExceeded, "the dry run's time limit of #{limit} s was reached")
          sleep GRACE_SECONDS
          # Still not back: write what is known and end the process (PostgreSQL rolls back the
          # transaction of a connection that closes).
          @tables_unknown = true
          write_measure(1, TimeLimitExceeded.new("time limit #{limit} s (hard stop)"))
          $stdout.flush rescue nil # rubocop:disable Style/RescueModifier
          exit!(0)
        end
      end

      # ---------------------------------------------------------------- measuring
      STATS_SQL = "SELECT schemaname, relname, n_tup_ins, n_tup_upd, n_tup_del FROM pg_stat_xact_user_tables " \
                  "WHERE n_tup_ins + n_tup_upd + n_tup_del > 0"

      def read_counts(raw)
        counts = {}
        raw.exec(STATS_SQL).each do |r|
          counts["#{r['schemaname']}.#{r['relname']}"] = {
            "inserted" => r["n_tup_ins"].to_i, "updated" => r["n_tup_upd"].to_i, "deleted" => r["n_tup_del"].to_i
          }
        end
        counts
      end

      def add_counts(counts)
        counts.each do |t, c|
          c.each { |k, v| @tables[t][k] += v }
        end
      end

      def install_sql_watch
        ActiveSupport::Notifications.subscribe("sql.active_record") do |*, payload|
          ex = payload[:exception_object]
          next unless ex

          @seen[:lock] = true if defined?(::ActiveRecord::LockWaitTimeout) && ex.is_a?(::ActiveRecord::LockWaitTimeout)
          @seen[:lock] = true if ex.message.include?("PG::LockNotAvailable")
          @seen[:statement] = true if defined?(::ActiveRecord::QueryCanceled) && ex.is_a?(::ActiveRecord::QueryCanceled)
        end
      end

      # A COMMIT (or the end of the transaction some other way) in a dry run is refused.
      ENDS_TRANSACTION = /(?:\A|;)\s*(?:COMMIT|END|ABORT|ROLLBACK(?!\s+TO)|PREPARE\s+TRANSACTION|BEGIN|START\s+TRANSACTION)\b/i

      def install_dry_guards(conn)
        guard = Module.new do
          %i[execute exec_query exec_update exec_delete].each do |m|
            define_method(m) do |sql, *rest, **kw, &blk|
              if !Batchless::PatchShim.finishing? && sql.is_a?(String) && sql.match?(ENDS_TRANSACTION)
                raise Refused, "batchless dry run: a statement that ends the transaction is refused (#{sql[0, 40]})"
              end
              super(sql, *rest, **kw, &blk)
            end
          end
          define_method(:commit_db_transaction) do |*a|
            raise Refused, "batchless dry run: COMMIT is refused" unless Batchless::PatchShim.finishing?

            super(*a)
          end
        end
        conn.singleton_class.prepend(guard)
        pg_gate = Module.new do
          %i[new connect open connect_start].each do |m|
            define_method(m) do |*a, **kw, &blk|
              raise Refused, "batchless dry run: a second database connection is refused" if Batchless::PatchShim.measuring?

              super(*a, **kw, &blk)
            end
          end
        end
        ::PG::Connection.singleton_class.prepend(pg_gate) if defined?(::PG::Connection)
      end

      def measuring?
        @measuring && !@finishing
      end

      def finishing?
        @finishing
      end

      # The real run: the counts of each transaction just before it commits; an autocommit
      # statement runs in its own transaction so that its counts can be read.
      DML = /\A\s*(?:WITH\b.*\b)?(?:INSERT|UPDATE|DELETE|MERGE|COPY|TRUNCATE)\b/im

      def install_run_hooks(conn)
        hooks = Module.new do
          %i[execute exec_query exec_update exec_delete].each do |m|
            define_method(m) do |sql, *rest, **kw, &blk|
              if !transaction_open? && sql.is_a?(String) && sql.match?(DML)
                transaction { super(sql, *rest, **kw, &blk) }
              else
                super(sql, *rest, **kw, &blk)
              end
            end
          end
          define_method(:commit_db_transaction) do |*a|
            begin
              Batchless::PatchShim.add_counts(Batchless::PatchShim.read_counts(raw_connection))
            rescue StandardError => e
              Batchless::PatchShim.unmeasured!(e)
            end
            super(*a)
          end
        end
        conn.class.prepend(hooks)
      end

      def unmeasured!(err)
        @unmeasured = err.message
      end

      def install_job_hooks
        if defined?(::Sidekiq::Client)
          hook = Module.new do
            define_method(:raw_push) do |payloads|
              Array(payloads).each do |p|
                Batchless::PatchShim.job!(p["wrapped"] || p["class"])
              end
              Batchless::PatchShim.dry? ? true : super(payloads)
            end
          end
          ::Sidekiq::Client.prepend(hook)
        end
        return unless defined?(::ActiveJob::Base)

        aj = Module.new do
          define_method(:enqueue) do |*a, **kw|
            adapter = self.class.queue_adapter
            via_sidekiq = defined?(::ActiveJob::QueueAdapters::SidekiqAdapter) &&
                          adapter.is_a?(::ActiveJob::QueueAdapters::SidekiqAdapter)
            if via_sidekiq && !Batchless::PatchShim.dry?
              super(*a, **kw)
            elsif via_sidekiq
              super(*a, **kw) # reaches Sidekiq::Client#raw_push: counted and captured there
            else
              Batchless::PatchShim.job!(self.class.name)
              Batchless::PatchShim.dry? ? self : super(*a, **kw)
            end
          end
        end
        ::ActiveJob::Base.prepend(aj)
      end

      def job!(klass)
        @jobs[klass.to_s] += 1
      end

      def install_mail_hooks
        hook_mail = lambda do
          next if @mail_hooked || !defined?(::Mail::Message)

          @mail_hooked = true
          ::Mail::Message.prepend(Module.new do
            define_method(:deliver) do |*a|
              Batchless::PatchShim.mail!
              Batchless::PatchShim.dry? ? self : super(*a)
            end
          end)
        end
        hook_mail.call
        ActiveSupport.on_load(:action_mailer) { hook_mail.call } if defined?(::ActiveSupport)
      end

      def mail!
        @mails += 1
      end

      # ---------------------------------------------------------------- outbound connections
      def allowed_endpoints
        %w[DATABASE_URL REDIS_URL].filter_map do |k|
          v = ENV[k]
          next if v.nil? || v.empty?

          u = URI.parse(v) rescue nil # rubocop:disable Style/RescueModifier
          next unless u&.host

          [u.host.delete_prefix("[").delete_suffix("]"), u.port || (k == "REDIS_URL" ? 6379 : 5432)]
        end
      end

      def check_connect!(host, port)
        allowed = @allowed ||= allowed_endpoints
        return if allowed.any? { |h, p| p.to_i == port.to_i && same_host?(h, host.to_s) }

        key = "#{host}:#{port}"
        @blocked[key] += 1
        raise Errno::ECONNREFUSED, "batchless dry run: outbound connection to #{key} blocked"
      end

      def same_host?(a, b)
        return true if a == b

        loop = %w[localhost 127.0.0.1 ::1]
        loop.include?(a) && loop.include?(b)
      end

      def install_socket_guard
        ::TCPSocket.prepend(Module.new do
          define_method(:initialize) do |host, port, *rest|
            Batchless::PatchShim.check_connect!(host, port)
            super(host, port, *rest)
          end
        end)
        sock = Module.new do
          %i[connect connect_nonblock].each do |m|
            define_method(m) do |addr, *rest, **kw|
              ai = addr.is_a?(Addrinfo) ? addr : (Addrinfo.new(addr) rescue nil) # rubocop:disable Style/RescueModifier
              Batchless::PatchShim.check_connect!(ai.ip_address, ai.ip_port) if ai&.ip?
              super(addr, *rest, **kw)
            end
          end
        end
        ::Socket.prepend(sock)
      end

      # ---------------------------------------------------------------- ending
      def finish(status, error)
        measured = true
        if dry? && @conn
          @finishing = true
          begin
            # An error inside the patch left the savepoint aborted: roll it back to read the counts.
            @conn.rollback_transaction if @conn.transaction_open? && @conn.open_transactions > 1
            add_counts(read_counts(@raw))
          rescue StandardError => e
            measured = false
            @unmeasured = e.message
          ensure
            begin
              @conn.rollback_transaction while @conn.transaction_open?
            rescue StandardError
              @raw&.close # a connection that closes rolls back
            end
          end
        end
        measured = false if @unmeasured
        write_measure(status, error, measured: measured)
        if error && !error.is_a?(TimeLimitExceeded)
          warn "#{error.class}: #{error.message}"
        end
        $stdout.flush
        exit!(dry? ? 0 : (error ? 1 : status.to_i))
      end

      def outcome(status, error)
        return "timed_out" if @timed_out || error.is_a?(TimeLimitExceeded)
        return "lock_bound" if @seen[:lock]
        return "timed_out" if @seen[:statement]
        return "raised" if error
        return "exited" unless status.to_i.zero?

        "ok"
      end

      def write_measure(status, error, measured: true)
        return if @written

        @written = true
        doc = {
          "batchless" => "patch-measure", "v" => 1, "mode" => @mode, "command" => @command,
          "outcome" => outcome(status, error), "exitStatus" => status.to_i,
          "error" => error && { "class" => error.class.name, "message" => redact(error.message.to_s)[0, 2000] },
          "durationMs" => ((Process.clock_gettime(Process::CLOCK_MONOTONIC) - @started) * 1000).round,
          "tables" => @tables_unknown ? {} : @tables.sort.to_h,
          "jobs" => @jobs.sort.to_h, "mails" => @mails, "blockedConnections" => @blocked.sort.to_h,
          "outputTail" => redact(tail_text), "limits" => @limits,
          "rolledBack" => dry?, "measured" => measured && !@tables_unknown,
          "unmeasuredReason" => @unmeasured
        }
        File.write(@out, JSON.generate(doc))
      rescue StandardError => e
        STDERR.puts "batchless patch shim: could not write #{@out}: #{e.class}"
      end

      def tail_text
        text = @tail.dup.force_encoding(Encoding::UTF_8).scrub("?")
        text.lines.last(TAIL_LINES).join[-TAIL_BYTES..] || text.lines.last(TAIL_LINES).join
      end

      SECRET_NAMES = /(PASSWORD|SECRET|TOKEN|KEY|DATABASE_URL|REDIS_URL|CREDENTIAL)/i

      def redact(text)
        out = text.dup
        ENV.each do |k, v|
          next unless k.match?(SECRET_NAMES) && v && v.length >= 6

          out = out.gsub(v, "[REDACTED]")
        end
        out.gsub(%r{(\w+://[^:/\s@]*:)[^@\s]+@}, '\1[REDACTED]@')
      end
    end
  end
end

Batchless::PatchShim.main(ARGV) if $PROGRAM_NAME == __FILE__
