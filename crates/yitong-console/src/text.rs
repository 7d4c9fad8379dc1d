//! The console's words in Chinese (the default) and English, and how it shows amounts (yuan,
//! two decimals) and instants (China Standard Time).

use chrono::{DateTime, FixedOffset, NaiveDate, Utc};
use yitong_core::Amount;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    Zh,
    En,
}

impl Lang {
    pub fn parse(text: Option<&str>) -> Lang {
        match text {
            Some("en") => Lang::En,
            _ => Lang::Zh,
        }
    }

    pub fn code(self) -> &'static str {
        match self {
            Lang::Zh => "zh-CN",
            Lang::En => "en",
        }
    }

    /// The word for `key` in this language. Every key has both; an unknown key is a
    /// programmer error.
    pub fn t(self, key: &str) -> &'static str {
        let (zh, en) = match key {
            "title" => ("一通 医保结算控制台", "Yitong settlement console"),
            "sign_in" => ("登录", "Sign in"),
            "sign_out" => ("退出", "Sign out"),
            "username" => ("用户名", "User name"),
            "password" => ("密码", "Password"),
            "bad_sign_in" => ("用户名或密码错误", "Wrong user name or password"),
            "rate_limited" => (
                "登录失败次数过多，请十五分钟后再试",
                "Too many failed sign-ins; try again in fifteen minutes",
            ),
            "overview" => ("概览", "Overview"),
            "reconcile" => ("日对账", "Daily reconciliation"),
            "clearing" => ("月清算", "Monthly clearing"),
            "statement" => ("清算单", "Clearing statement"),
            "search" => ("结算查询", "Settlement search"),
            "operator" => ("运维", "Operations"),
            "date" => ("日期", "Date"),
            "run" => ("对账", "Reconcile"),
            "matched" => ("对账平", "Matched"),
            "mismatched" => ("对账不平", "Breaks found"),
            "rows_submitted" => ("本方笔数", "Our rows"),
            "rows_in_ledger" => ("账本笔数", "Ledger rows"),
            "ours" => ("本方", "ours"),
            "ledger_side" => ("账本", "ledger"),
            "breaks" => ("差错", "Breaks"),
            "class" => ("差错类别", "Class"),
            "missing_in_ledger" => ("账本缺失", "Missing in the ledger"),
            "missing_in_submission" => ("本方缺失", "Missing in our records"),
            "duplicate" => ("重复", "Duplicate"),
            "amount_mismatch" => ("金额不符", "Amount mismatch"),
            "timing" => ("日期不符", "Timing"),
            "settlement_id" => ("结算号", "Settlement id"),
            "message_id" => ("报文号", "Message id"),
            "institution" => ("定点机构", "Institution"),
            "insured_city" => ("参保地", "Insured city"),
            "treatment_city" => ("就医地", "Treatment city"),
            "total_amount" => ("医疗费总额", "Total"),
            "fund_pay" => ("基金支付", "Fund pay"),
            "account_pay" => ("个人账户支付", "Account pay"),
            "cash_pay" => ("现金支付", "Cash pay"),
            "clearing_type" => ("清算类别", "Clearing type"),
            "fund_payments" => ("基金支付明细", "Fund pay by fund"),
            "fund_pay_type" => ("基金类型", "Fund type"),
            "disease" => ("病种", "Disease"),
            "by_clearing_type" => ("按清算类别", "By clearing type"),
            "by_fund_type" => ("按基金类型", "By fund type"),
            "other_city" => ("对方城市", "Other city"),
            "insured_city_pay" => ("参保地支付", "Insured city pay"),
            "status" => ("状态", "Status"),
            "reason" => ("原因", "Reason"),
            "include" => ("纳入清算", "Include"),
            "exclude" => ("不纳入", "Exclude"),
            "rollback" => ("回退", "Roll back"),
            "apply" => ("清算申请", "Apply for clearing"),
            "close" => ("关闭清算期", "Close the month"),
            "confirm" => ("确认", "Confirm"),
            "year" => ("年", "Year"),
            "month" => ("月", "Month"),
            "show" => ("查询", "Show"),
            "unconfirmed" => ("未确认", "Unconfirmed"),
            "included" => ("已纳入", "Included"),
            "excluded" => ("未纳入", "Excluded"),
            "unconfirmed_left" => ("未确认笔数", "Unconfirmed left"),
            "rows" => ("笔数", "Rows"),
            "export_xlsx" => ("导出 Excel", "Export Excel"),
            "export_csv" => ("导出 CSV", "Export CSV"),
            "net_position" => ("净头寸", "Net position"),
            "receivable" => ("应收", "Receivable"),
            "payable" => ("应付", "Payable"),
            "payments" => ("支付指令", "Payment instructions"),
            "payer" => ("付款方", "Payer"),
            "payee" => ("收款方", "Payee"),
            "amount" => ("金额", "Amount"),
            "top_up_due" => ("应补充预付金", "Top-up due"),
            "fund_before" => ("清算前预付金", "Fund before"),
            "fund_after" => ("清算后预付金", "Fund after"),
            "issued" => ("已出具", "Issued"),
            "confirmed" => ("已确认", "Confirmed"),
            "confirmed_at" => ("确认时间", "Confirmed at"),
            "confirmed_by" => ("确认人", "Confirmed by"),
            "issued_at" => ("出具时间", "Issued at"),
            "upload" => ("上传 HIS 明细 (CSV)", "Upload the HIS detail file (CSV)"),
            "file" => ("文件", "File"),
            "done" => ("操作成功", "Done"),
            "refused" => ("被拒绝", "Refused"),
            "not_found" => ("未找到", "Not found"),
            "trace" => ("链路追踪", "Trace"),
            "person" => ("人员编号", "Person"),
            "visit" => ("就诊号", "Visit"),
            "settled_at" => ("结算时间", "Settled at"),
            "in_doubt" => ("待决结算", "Settlements in doubt"),
            "none" => ("无", "None"),
            "prepaid" => ("预付金", "Prepaid fund"),
            "available" => ("可用", "Available"),
            "threshold" => ("预警线", "Threshold"),
            "below_threshold" => ("低于预警线", "Below threshold"),
            "from" => ("起始日期", "From"),
            "to" => ("截止日期", "To"),
            "today" => ("今日", "Today"),
            "forbidden" => ("无权访问", "Not permitted"),
            "csrf" => (
                "表单已失效，请重新提交",
                "The form expired; submit it again",
            ),
            "language" => ("English", "中文"),
            "role" => ("身份", "Role"),
            "city" => ("城市", "City"),
            "cancellation" => ("退费", "Cancellation"),
            "journal_head" => ("账本头哈希", "Journal head"),
            "completed" => ("已完成", "Completed"),
            "applied" => ("已申请", "Applied"),
            "closed" => ("已关闭", "Closed"),
            "all" => ("全部", "All"),
            "bad_month" => ("月份格式应为 YYYY-MM", "The month must be YYYY-MM"),
            "previous_month" => ("上月", "Previous month"),
            "next_month" => ("下月", "Next month"),
            "totals" => ("结算汇总", "Totals"),
            "this_month" => ("本月", "This month"),
            "settlements" => ("结算笔数", "Settlements"),
            "cancellations" => ("退费笔数", "Cancellations"),
            "pending_in_ledger" => ("账本待决笔数", "Pending in the ledger"),
            "matrix_today" => ("今日结算（就医地 × 参保地）", "Today by pair of cities"),
            "matrix_month" => (
                "本月结算（就医地 × 参保地）",
                "This month by pair of cities",
            ),
            "matrix_month_cities" => (
                "本月结算（按城市，合计其各统筹区）",
                "This month by pair of cities, their pools summed",
            ),
            "matrix_cell" => (
                "每格：笔数、医疗费总额、基金支付（元）",
                "each cell: rows, total, fund pay (yuan)",
            ),
            "volume_per_day" => (
                "每日结算笔数（参保地 → 就医地）",
                "Settlements per day (insured → treatment city)",
            ),
            "prepaid_over_month" => ("本月每日预付金可用额", "Prepaid fund available each day"),
            "calendar" => ("对账日历", "Reconciliation calendar"),
            "not_reconciled" => ("未对账", "Not reconciled"),
            "mon" => ("一", "Mon"),
            "tue" => ("二", "Tue"),
            "wed" => ("三", "Wed"),
            "thu" => ("四", "Thu"),
            "fri" => ("五", "Fri"),
            "sat" => ("六", "Sat"),
            "sun" => ("日", "Sun"),
            "clearing_house" => ("清算中心", "Clearing house"),
            "health" => ("节点健康", "Node health"),
            "node" => ("节点", "Node"),
            "service" => ("服务", "Service"),
            "latency_ms" => ("响应时间（毫秒）", "Latency (ms)"),
            "call_rates" => ("调用量", "Call rates"),
            "no_metrics" => (
                "未配置指标地址（--metrics-url）",
                "No metrics endpoint configured (--metrics-url)",
            ),
            "calls_total" => ("累计调用", "Calls"),
            "calls_failed" => ("失败调用", "Failed"),
            "calls_per_minute" => (
                "每分钟调用（自上次查看）",
                "Calls per minute (since last look)",
            ),
            "recent_failures" => ("新近失败", "Recent failures"),
            "trace_viewer" => ("链路追踪查看器", "Trace viewer"),
            "attempts" => ("重试次数", "Attempts"),
            "last_error" => ("最近错误", "Last error"),
            "filings" => ("异地就医备案", "Cross-city filings"),
            "file_filing" => ("办理备案", "File a filing"),
            "cancel_filing" => ("撤销备案", "Cancel the filing"),
            "filing_id" => ("备案号", "Filing id"),
            "filing_kind" => ("备案类型", "Kind"),
            "valid_from" => ("开始日期", "Valid from"),
            "valid_until" => ("结束日期", "Valid until"),
            "open_ended" => ("长期", "Open-ended"),
            "filing_filed" => ("有效", "Filed"),
            "filing_cancelled" => ("已撤销", "Cancelled"),
            "filed_at" => ("备案时间", "Filed at"),
            "kind_resettled_retiree" => ("异地安置退休人员", "Resettled retiree"),
            "kind_long_term_resident" => ("异地长期居住人员", "Long-term resident"),
            "kind_posted_staff" => ("常驻异地工作人员", "Posted staff"),
            "kind_referral" => ("异地转诊人员", "Referral"),
            "kind_emergency" => ("异地急诊抢救人员", "Emergency"),
            "kind_other_temporary" => ("其他临时外出就医人员", "Other temporary trip"),
            _ => panic!("no words for {key}"),
        };
        match self {
            Lang::Zh => zh,
            Lang::En => en,
        }
    }
}

/// China Standard Time, UTC+8 all year.
pub fn china() -> FixedOffset {
    FixedOffset::east_opt(8 * 3_600).expect("UTC+8 is an offset")
}

/// Today's date in China Standard Time.
pub fn today() -> NaiveDate {
    Utc::now().with_timezone(&china()).date_naive()
}

/// An instant in China Standard Time, to the second: "2026-03-05 14:03:09".
pub fn cst(timestamp: Option<&prost_types::Timestamp>) -> String {
    let Some(timestamp) = timestamp else {
        return String::new();
    };
    DateTime::from_timestamp(timestamp.seconds, 0)
        .map(|instant| {
            instant
                .with_timezone(&china())
                .format("%Y-%m-%d %H:%M:%S")
                .to_string()
        })
        .unwrap_or_default()
}

/// A yuan string from the wire with exactly two decimals ("12.5" becomes "12.50"); a string
/// that is not an amount is shown as it came.
pub fn yuan(text: &str) -> String {
    match Amount::parse_signed(text) {
        Ok(amount) => amount.to_string(),
        Err(_) => text.to_owned(),
    }
}

/// The fen of a yuan string from the wire; zero when it is empty.
pub fn fen(text: &str) -> i64 {
    Amount::parse_signed(text).map(Amount::fen).unwrap_or(0)
}

/// Fen as yuan with two decimals.
pub fn fen_to_yuan(fen: i64) -> String {
    Amount::from_fen(fen).to_string()
}
