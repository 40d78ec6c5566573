"""Training-only caller phrasings, written after the held-out template split was fixed.

The core templates of :data:`data.synth.lexicon.TEMPLATES` (20 or 21 per intent) were split into train, validation
and test before these were written, so these extra ones only ever go to training: their ids number on from the
core ones (``"praise/20"`` .. ``"praise/27"``), :func:`data.synth.text.split_templates` marks them ``"train"``
and draws the held-out split over the core ids alone, so validation and test stay what they were. The intent
trainer reads them with ``data.extra_templates=true``; the audio corpus does not use them.

They add scenarios and sentence structures that the core ones lack. About half of each intent's are multi-topic:
the caller mentions words typical of another intent (a refund, a repair, a bill, a booking), but the main
request or complaint decides the label. That idea came from the validation errors of intent v3 (validation
templates whose topic words belong to another intent); the five phrasings that restated those validation
templates themselves were taken out again, so that the validation score still measures unseen phrasings.
Whoever wrote them was shown no test template and no test error.

Same mini-language and rules as :mod:`data.synth.lexicon`: slot values only through their placeholders, only
Chinese characters and Chinese punctuation outside ``{}``.
"""

from __future__ import annotations

from data.synth.lexicon import T

EXTRA_TEMPLATES: dict[str, tuple[dict[str, str], ...]] = {
    "logistics_delay": (
        # mentions 退货/退款/拒收, but the caller wants the parcel delivered
        T("[{c_order}{order_id}，]我不是要退款，我就要东西，{product}说好{t_promise}送到，现在{t_wait}了还在路上。"),
        T("我特意加钱选的加急配送，[加了{amount:small}，]结果比普通快递还慢，{t_wait}了都没送到。"),
        T("换货寄出来的新{product}，商家说{t_past}就发了，物流到现在一步都没动，[{c_phone}{phone}，]{req}。"),
        T("{courier}一个同城的件走了{t_wait}，隔壁区送过来要这么久吗？"),
        T("派送时间一改再改，从周一拖到周五，[{c_order}{order_id}，]东西到底哪天能到？",
          cantonese="派送时间改完又改，由礼拜一拖到礼拜五，[{c_order}{order_id}，]啲嘢到底边日先到？"),
        T("我改了一次收货地址，之后包裹就一直卡在原来的网点，[{c_phone}{phone}，]已经{t_wait}没动了。"),
        T("包裹在{city}转运中心停了{t_wait}了，里面的{product}是好是坏我都不知道，总得先让我收到吧。"),
    ),
    "product_quality": (
        # ends with a return request, but the complaint is the fault
        T("买的{product:clothing}洗了一次就变形了，[{c_order}{order_id}，]做工也太差了，东西你们收回去，钱退给我。"),
        T("我不想修，新买的{product}就{defect}，修好了我也不放心，这明明就是质量问题。"),
        T("快递倒是挺快的，可{product}一到手就{defect}，[{c_order}{order_id}，]你们发货前都不检查的吗？",
          cantonese="快递係几快，不过{product}一到手就{defect}，[{c_order}{order_id}，]你哋发货之前都唔检查嘅咩？"),
        T("货已经换过一次，新换来的{product}还是{defect}，你们这个型号是不是本身就有问题？"),
        T("{product:small}漏电，手碰到外壳都发麻，万一电到孩子怎么办？"),
        T("宣传上说续航一整天，[我这个{product:phone}]充满电两个小时就没电了，"
          "[{c_order}{order_id}，]这不是虚假宣传吗？"),
        T("你们客服态度是挺好的，可是{product}的质量实在不行，{defect}，这都第三次了。",
          cantonese="你哋客服态度係几好，但係{product}啲质量真係唔得，{defect}，已经第三次喇。"),
    ),
    "refund_dispute": (
        T("酒店订单我{t_past}就取消了，酒店也同意了，[{c_order}{order_id}，]但是你们平台到现在还没退我{amount:mid}。"),
        T("扣钱的时候一秒钟就扣走了，退款却要我等{t_wait}，[足足{amount}，]凭什么？"),
        T("商家承认{product}是质量问题，却只肯给我换，不肯退款，[{c_order}{order_id}，]我就要退钱。",
          cantonese="商家认咗{product}係质量问题，但係只肯同我换，唔肯退钱，[{c_order}{order_id}，]我就係要退钱。"),
        T("我付的是现金，[{amount}，]你们给我退成了优惠券，我要原路退回。"),
        T("退货的包裹商家{t_past}就签收了，[{c_order}{order_id}，]签收了也不退款，一直说在验货。"),
        T("送修的时候说好修不好就全额退款，现在{product:phone}修不好，[{amount:mid}的货款]却不给退了。"),
        T("退个款要我打五次电话，钱到底去哪了？", cantonese="退笔钱要我打五次电话，啲钱去咗边呀？"),
        T("平台客服都介入了，说支持我退款，[{c_order}{order_id}，]可商家就是拖着不点同意，{req}。"),
    ),
    "billing_error": (
        # mentions an outage, an order, a refund or an installation, but the complaint is the charge
        T("网断了半个月，月租一分没少扣，[{c_phone}{phone}，]断网期间的钱应该退给我吧？"),
        T("我上个月就改成{amount:small}的套餐了，这个月怎么还按老套餐扣钱？",
          cantonese="我上个月已经转咗{amount:small}嘅套餐，点解呢个月仲係按旧套餐扣钱？"),
        T("快递都还没发货，[{c_order}{order_id}，]这个订单就扣了我两次运费，一次{amount:small}。"),
        T("我给家里老人办的副卡，平时根本没用过，为什么每个月都扣{amount:small}的功能费？"),
        T("我不是要退款，我是要你们把账给我算清楚，[{c_phone}{phone}，]{t_past}扣的{amount}到底是什么费用？"),
        T("{product}我只开了一个月，却扣了我三个月的钱。"),
        T("账单上多了一笔{amount:small}的安装调试费，当初装{product:network}的时候合同上写得清清楚楚是免费安装的。"),
        T("我每个月都按时交的，账单上却多了一笔滞纳金[，{amount:small}]，这是哪来的？",
          cantonese="我每个月都准时交费，账单上面点解会多咗一笔滞纳金[，{amount:small}]？呢笔钱边度嚟㗎？"),
    ),
    "service_attitude": (
        # staff behaviour in hotels, repairs, deliveries, shops; an item or a refund is only the setting
        T("酒店前台对我们爱答不理，我问个早餐在几楼都翻白眼，[{c_phone}{phone}，]我要投诉这个前台。",
          cantonese="酒店前台对我哋爱理唔理，我问下早餐喺几楼都反白眼，[{c_phone}{phone}，]我要投诉呢个前台。"),
        T("修{product:small}的师傅一进门就嫌我家乱，一边修一边骂骂咧咧的，我花钱请人上门不是来受气的。"),
        T("我就问了一句退款到哪一步了，客服就冷笑说急什么，又不是不给你，然后直接把电话挂了。[{c_phone}{phone}。]",
          cantonese="我就问咗句退款去到边一步，客服就冷笑话急咩啫，又唔係唔畀你，跟住就收我线。[{c_phone}{phone}。]"),
        T("营业厅的小伙子当着一屋子人的面大声念我欠了多少费，一点都不顾及别人的面子。"),
        T("送货的师傅不肯送上楼，让我一个孕妇自己下楼搬{product:fridge}，我说了两句他就开始骂人。"),
        T("门店那个店员，问她两句就翻白眼，什么素质啊！", cantonese="门市嗰个店员，问多佢两句就反白眼，咩质素呀！"),
        T("我年纪大了，不会用手机下单，打电话过去问，客服一听就不耐烦，说不会用就别买，"
          "[{c_phone}{phone}，]哪有这样说话的。"),
    ),
    "repair_aftersales": (
        T("我搬新家了，{product:aircon}要拆下来装到新房子，[{c_phone}{phone}，]麻烦安排个师傅，移机费多少都可以。",
          cantonese="我搬咗新屋，部{product:aircon}要拆落嚟装去新屋，[{c_phone}{phone}，]"
                    "唔该安排个师傅，移机费几多都得。"),
        T("寄修回来的{product}，检测报告上写着未发现问题，可它还是{defect}，等于白寄了一趟。"),
        T("{product:tv}的遥控器丢了，想找售后配一个原装的，[{c_phone}{phone}，]直接给我寄过来就行。"),
        T("装{product:aircon}的时候墙上打的孔没封好，每次下雨都往屋里渗水，"
          "[{c_phone}{phone}，]让安装师傅回来重新弄一下。"),
        T("我不想退货，就想把{product}修好，你们售后一直让我先退了再重新买，真的很折腾。"),
        T("{product}已经用了四五年了，现在{defect}，不是说质量不好，就是想找个人上门修一修，[{c_phone}{phone}。]"),
        T("送修的{product}，[{c_order}{order_id}，]想问一下修到哪一步了，什么时候能拿回来？",
          cantonese="送去整嘅{product}，[{c_order}{order_id}，]想问下整到边一步，几时可以攞返？"),
        T("{product}的零件换了，毛病还在。"),
    ),
    "network_outage": (
        T("每个月{amount:small}的月租我一分没少交，家里的网三天两头出问题，今天干脆彻底断了，[{c_phone}{phone}。]"),
        T("师傅{t_past}上门修过一次，走了不到一个小时又断网了，[{c_phone}{phone}，]{req}。"),
        T("我到{city}出差，手机一到这边就没信号，只能蹭酒店的网，[号码是{phone}。]",
          cantonese="我去咗{city}出差，部手机一到呢边就冇信号，净係用得酒店嘅网，[号码係{phone}。]"),
        T("座机拿起来一点声音都没有，打不出去也打不进来，[{c_phone}{phone}。]"),
        T("我不是来咨询套餐的，我就想知道网什么时候能恢复，都断了{t_wait}了。"),
        T("断网{t_wait}了，赔不赔钱先不说，你们先把网给我修好。",
          cantonese="断咗网{t_wait}，赔唔赔钱迟啲先讲，你哋快啲帮我整返好个网先。"),
        T("一到下雨天网就断，[{c_phone}{phone}，]今天又断了。"),
        T("我们公司的专线从早上九点断到现在，几十号人干不了活，[{c_phone}{phone}，]{req}。"),
    ),
    "booking_issue": (
        T("{product:ticket}的钱都付了{amount:mid}，[{c_order}{order_id}，]到了门口才说没预约上，让我们明天再来。"),
        T("我不是要退款，我要的是今天晚上那班的位子，[{c_order}{order_id}，]你们把我的票取消了，我怎么回去？",
          cantonese="我唔要退款，我就係要今晚嗰班嘅位，[{c_order}{order_id}，]你哋取消咗我张飞，我点返去呀？"),
        T("我订票的时候就选了靠窗的座位，值机的时候被换到了最后一排厕所边上，[{c_order}{order_id}。]"),
        T("我提前一个星期订了年夜饭的包间，今天到了饭店说包间给了别人，[{c_phone}{phone}，]一大家子人都在门口站着。"),
        T("在你们平台租的车，[{c_order}{order_id}，]到了门店说没车了，让我等到下午。"),
        T("房间都订好了，说没就没了？", cantonese="订好咗嘅房，话冇就冇？"),
        T("前台小姑娘态度挺好的，可问题是我订的{product:hotel}没了，她也解决不了，[{c_order}{order_id}，]{req}。"),
        T("下单的时候是{amount:mid}，[{c_phone}{phone}，]现在酒店说价格涨了，要么补差价要么取消，哪有这样的？"),
    ),
    "order_inquiry": (
        T("我用分期付款买的{product}，想看一下订单现在到哪里了，[{c_order}{order_id}。]"),
        T("我一个订单买了三样东西，只显示发了两件，剩下那{mw}{product}是单独发吗？"),
        T("我之前退过一个单，这回新下的{product}，[{c_order}{order_id}，]帮我看看发出去了吗，别跟退的那单搞混了。"),
        T("我下单的时候选的是黑色的{product}，能帮我看一下订单里写的是不是黑色吗？"),
        T("[{c_order}{order_id}，]发货了吗？", cantonese="[{c_order}{order_id}，]发咗货未呀？"),
        T("我在{shop}下的单，手机上找不到这个订单了，[{c_phone}{phone}，]能帮我查一下还在不在吗？"),
        T("我给朋友买了{mw}{product}当生日礼物，[{c_order}{order_id}，]想知道现在到哪里了，周六之前能不能送到？"),
    ),
    "consultation": (
        # asks how refunds, bills, warranty, bookings work; nothing has gone wrong yet
        T("如果我退货的话，退款是原路退回还是退到余额里？大概要几天？",
          cantonese="如果我退货，退款係原路退返定係退落余额度？大概要几多日？"),
        T("我想了解一下，套餐里的流量用完了以后怎么收费，是按兆算还是按天算？[{c_phone}{phone}。]",
          cantonese="我想了解下，套餐啲流量用晒之后点收费，係按兆计定係按日计？[{c_phone}{phone}。]"),
        T("我想把号码带到外地用，携号转网要满足什么条件？[{c_phone}{phone}。]"),
        T("我想问一下，帮家里人订酒店，入住人可以写他们的名字吗？需不需要本人的身份证？"),
        T("想问一下，买完以后降价了，你们有没有保价？保价期是几天？"),
        T("请问提前退订{product:billing}需要交违约金吗？"),
        T("新房还没装修好，{product:aircon}现在买的话，能不能过两个月再约师傅上门安装？[{c_phone}{phone}。]"),
    ),
    "praise": (
        # a past problem that got fixed: the caller is thanking, not complaining
        T("上次我投诉过你们一次，说实话当时挺生气的，没想到第二天就有专人打电话来道歉，"
          "问题也解决了，今天专门打来说声谢谢。",
          cantonese="上次我投诉过你哋一次，老实讲嗰阵都几嬲，估唔到第二日就有专人打嚟道歉，问题都搞掂埋，"
                    "今日特登打嚟讲声多谢。"),
        T("我家断网那次，师傅半夜十一二点还赶过来修，[{c_phone}{phone}，]我一直想打个电话谢谢他。"),
        T("上回酒店那边没房了，你们十分钟就帮我换了一家，条件比原来的还好，也没让我补差价，真的很靠谱。"),
        T("之前{product}修了好几次都没修好，这次换了个老师傅，一次就修好了，真得好好夸夸他。"),
        T("包裹在路上耽误了几天，你们主动打电话来解释，还送了张优惠券，这种做法我挺认可的。"),
        T("你们那个{staff}，真是好样的！", cantonese="你哋嗰个{staff}，真係好嘢！"),
        T("{product}用了快半年了，一点毛病都没有，比我想象的好，特地打来夸一句。"),
        T("维修师傅明明可以让我换整块主板，他却只换了个小零件，[才花了{amount:small}，]这么实在的师傅不多了。"),
    ),
}
